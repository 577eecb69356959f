"""Every kind of outgoing message through the worker's API (issue 24, the outgoing half): the
real worker, the real neonize client and its own builders (thumbnails with PIL, durations and
thumbnails with ffmpeg, vCards, polls, reactions, edits, revokes), recorded at the two calls
that would reach WhatsApp: `send_message` and `upload` (tests/worker/conftest.py)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from tests.support import media_files as files
from tests.support import wamessages as wa
from tests.worker.conftest import Harness, wait_for

TOKEN = "t" * 32
Answer = tuple[int, dict[str, str], dict[str, Any]]


def call(h: Harness, path: str, body: bytes, content_type: str = "application/json", *,
         key: str | None = None) -> Answer:
    assert h.worker.http is not None
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}{path}", data=body,
                                 method="POST", headers={"Content-Type": content_type,
                                                         "Authorization": f"Bearer {TOKEN}"})
    if key is not None:
        req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def send(h: Harness, message: dict[str, Any], **kw: Any) -> Answer:
    return call(h, "/v1/messages", json.dumps({"to": "15550001111", **message}).encode(), **kw)


def upload(h: Harness, message: dict[str, Any], data: bytes, *, key: str | None = None,
           content_type: str = "application/octet-stream", filename: str = "f.bin") -> Answer:
    body, ctype = files.multipart(json.dumps({"to": "15550001111", **message}).encode(), data,
                                  content_type=content_type, filename=filename)
    return call(h, "/v1/messages", body, ctype, key=key)


@pytest.fixture
def api(make_worker: Callable[..., Harness]) -> Callable[..., Harness]:
    def make(**env: str) -> Harness:
        return make_worker(env={"WABOT_API_TOKEN": TOKEN, **env})
    return make


def last(h: Harness) -> Any:
    return h.client.sent[-1][1]


# --- media --------------------------------------------------------------------------------------


def test_an_uploaded_image_is_sent_with_neonizes_thumbnail_and_upload(
        api: Callable[..., Harness]) -> None:
    h = api()
    image = files.png()
    status, _, body = upload(h, {"image": {"caption": "the chart"}}, image,
                             content_type="image/png")
    assert status == 200, body
    assert body["type"] == "image" and body["messageId"] == "S1"
    assert h.client.uploads == [image]  # the file itself went to WhatsApp's media servers
    msg = last(h).imageMessage
    assert msg.caption == "the chart" and msg.mimetype == "image/png"
    assert msg.fileLength == len(image) and msg.URL.startswith("https://mmg.whatsapp.net/")
    assert msg.JPEGThumbnail.startswith(b"\xff\xd8")  # PIL made the thumbnail
    assert h.metric("wabot_sends_total", type="image", result="sent") == 1


@pytest.mark.parametrize(("kind", "make", "field"), [
    ("video", files.mp4, "videoMessage"),
    ("audio", files.mp3, "audioMessage"),
    ("voice", files.ogg_opus, "audioMessage"),
])
def test_video_audio_and_voice_notes_get_ffmpegs_duration(
        api: Callable[..., Harness], kind: str, make: Callable[[], bytes], field: str) -> None:
    h = api()
    data = make()
    status, _, body = upload(h, {kind: {}}, data)
    assert status == 200 and body["type"] == kind, body
    msg = getattr(last(h), field)
    assert msg.seconds == 2 and msg.fileLength == len(data)
    if kind == "video":
        assert msg.JPEGThumbnail  # a frame, extracted by ffmpeg
    if kind == "voice":
        assert msg.PTT and msg.mimetype == "audio/ogg; codecs=opus"
    if kind == "audio":
        assert not msg.PTT and msg.mimetype == "audio/mpeg"


def test_other_audio_becomes_an_ogg_opus_voice_note(api: Callable[..., Harness]) -> None:
    from botworker.core.outgoing import is_opus

    h = api()
    status, _, body = upload(h, {"voice": {}}, files.mp3(), content_type="audio/mpeg")
    assert status == 200, body
    msg = last(h).audioMessage
    assert msg.PTT and msg.mimetype == "audio/ogg; codecs=opus" and msg.seconds == 2
    assert is_opus(h.client.uploads[-1])  # ffmpeg made it Opus before the upload


def test_a_document_keeps_its_file_name_and_type(api: Callable[..., Harness]) -> None:
    h = api()
    status, _, body = upload(h, {"document": {"caption": "Q3"}}, files.pdf(),
                             filename="../../report Q3.pdf", content_type="application/pdf")
    assert status == 200, body
    doc = last(h).documentMessage
    assert (doc.fileName, doc.mimetype, doc.caption) == ("report Q3.pdf", "application/pdf",
                                                         "Q3")
    status, _, _ = upload(h, {"document": {"fileName": "notes.txt", "mimetype": "text/plain"}},
                          b"plain words\n")
    assert status == 200
    doc = last(h).documentMessage
    assert (doc.fileName, doc.mimetype) == ("notes.txt", "text/plain")


def test_a_sticker_is_made_webp_by_neonize(api: Callable[..., Harness]) -> None:
    h = api()
    for image in (files.webp_sticker(), files.png()):
        status, _, body = upload(h, {"sticker": {}}, image)
        assert status == 200, body
        sticker = last(h).stickerMessage
        assert sticker.mimetype == "image/webp"
        assert h.client.uploads[-1][8:12] == b"WEBP"


class _Files(http.server.BaseHTTPRequestHandler):
    served: ClassVar[dict[str, tuple[str, bytes]]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/chart.png")
            self.end_headers()
            return
        ctype, data = self.served.get(self.path, ("text/plain", b""))
        self.send_response(200 if self.path in self.served else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    _Files.served = {"/chart.png": ("image/png", files.png()),
                     "/lies.png": ("image/png", files.pdf()),
                     "/menu.pdf": ("application/pdf", files.pdf())}
    _Files.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_media_by_url_is_fetched_only_where_the_egress_policy_allows(
        api: Callable[..., Harness], file_server: str) -> None:
    refused = api()
    status, _, body = send(refused, {"image": {"url": f"{file_server}/chart.png"}})
    assert status == 422 and body["field"] == "image.url", body
    assert "loopback" in body["message"]
    assert _Files.hits == [] and refused.client.sent == []  # not even a connection
    refused.worker.stop(5.0)

    h = api(WABOT_WEBHOOK_ALLOW_CIDRS="127.0.0.1/32")  # the admin's exception, as for webhooks
    status, _, body = send(h, {"image": {"url": f"{file_server}/moved", "caption": "c"}})
    assert status == 200, body
    assert h.client.uploads == [files.png()] and _Files.hits == ["/moved", "/chart.png"]
    status, _, body = send(h, {"document": {"url": f"{file_server}/menu.pdf"}})
    assert status == 200
    assert last(h).documentMessage.fileName == "menu.pdf"
    status, _, body = send(h, {"image": {"url": f"{file_server}/missing.png"}})
    assert status == 422 and "HTTP 404" in body["message"]
    status, _, body = send(h, {"image": {"url": f"{file_server}/lies.png"}})
    assert status == 422 and body["field"] == "image.url"
    assert "application/pdf" in body["message"]
    assert len(h.client.sent) == 2


# --- hostile uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "data", "ctype", "field", "words"), [
    ({"image": {}}, files.pdf(), "image/png", "file", "application/pdf"),  # lying type
    ({"image": {}}, files.jpeg(), "image/png", "file", "declared as image/png"),
    ({"image": {}}, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png", "image", "cannot be"),
    ({"image": {}}, b"\xff\xd8\xff" + b"\0" * (5 * 1024 * 1024), "image/jpeg", "file",
     "at most"),
    ({"voice": {}}, files.png(), "image/png", "file", "audio"),
    ({"voice": {}}, b"ID3" + bytes(600), "audio/mpeg", "voice", "voice note"),  # not audio
    ({"video": {}}, files.mp4()[:600], "video/mp4", "video", "cannot be"),  # cut off
    ({"sticker": {}}, files.pdf(), "application/pdf", "file", "WebP"),
    ({"document": {}}, b"", "application/pdf", "file", "empty"),
    ({"text": "hi"}, files.png(), "image/png", "file", "takes no file"),
    ({"image": {"url": "https://example.com/a.png"}}, files.png(), "image/png", "image.url",
     "not both"),
])
def test_bad_uploads_are_422_naming_the_field_and_nothing_is_sent(
        api: Callable[..., Harness], message: dict[str, Any], data: bytes, ctype: str,
        field: str, words: str) -> None:
    h = api()
    status, _, body = upload(h, message, data, content_type=ctype)
    assert status == 422 and body["field"] == field, body
    assert words in body["message"]
    assert h.client.sent == []
    assert send(h, {"text": "still fine"})[0] == 200  # the worker goes on


def test_truncated_and_malformed_multipart_bodies_are_422(api: Callable[..., Harness]) -> None:
    h = api()
    body, ctype = files.multipart(b'{"to": "15550001111", "image": {}}', files.png())
    cut = body[: len(body) - 40]  # the closing boundary and the file's end are missing
    status, _, answer = call(h, "/v1/messages", cut, ctype)
    assert status == 422 and answer["field"] == "file" and "truncated" in answer["message"]
    status, _, answer = call(h, "/v1/messages", body.replace(b'name="message"',
                                                             b'name="other"'), ctype)
    assert status == 422 and "unknown part" in answer["message"], answer
    status, _, answer = call(h, "/v1/messages", body, "multipart/form-data")
    assert status == 422 and answer["field"] == "Content-Type"
    status, _, answer = call(h, "/v1/messages", b'{"to": "15550001111", "image": {}}')
    assert status == 422 and answer["field"] == "image.url"
    big = json.dumps({"to": "15550001111", "text": "x" * 70_000}).encode()
    assert call(h, "/v1/messages", big)[0] == 413  # a JSON body keeps its 64 KiB limit
    assert h.client.sent == []


def test_a_body_above_the_largest_file_is_refused_before_it_is_read(
        api: Callable[..., Harness]) -> None:
    h = api()
    assert h.worker.http is not None
    limit = h.worker.sender.media.max_bytes() + 64 * 1024
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}/v1/messages",
                                 data=b"", method="POST",
                                 headers={"Content-Length": str(limit + 1),
                                          "Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 413


def test_idempotency_covers_the_uploaded_bytes(api: Callable[..., Harness]) -> None:
    h = api()
    first = upload(h, {"image": {}}, files.png(), key="img-1")
    again = upload(h, {"image": {}}, files.png(), key="img-1")
    assert first[0] == again[0] == 200 and again[1].get("Idempotent-Replayed") == "true"
    other = upload(h, {"image": {}}, files.jpeg(), key="img-1")
    assert other[0] == 409 and other[2]["error"] == "idempotency_key_reused"
    assert len(h.client.sent) == 1 and len(h.client.uploads) == 1


# --- location, contact, poll ------------------------------------------------------------------


def test_location_contact_and_poll(api: Callable[..., Harness]) -> None:
    h = api()
    assert send(h, {"location": {"latitude": 52.52, "longitude": 13.405,
                                 "name": "Office", "address": "Main St 1"}})[0] == 200
    loc = last(h).locationMessage
    assert (loc.degreesLatitude, loc.degreesLongitude, loc.name) == (52.52, 13.405, "Office")
    assert send(h, {"contact": {"name": "Ada Support", "phone": "+4915112345678"}})[0] == 200
    card = last(h).contactMessage
    assert card.displayName == "Ada Support"
    assert "BEGIN:VCARD" in card.vcard and "waid=4915112345678" in card.vcard
    status, _, body = send(h, {"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"]}})
    assert status == 200 and body["type"] == "poll"
    poll = last(h).pollCreationMessage
    assert poll.name == "Lunch?" and [o.optionName for o in poll.options] == ["Pizza", "Sushi"]
    assert poll.selectableOptionsCount == 1


@pytest.mark.parametrize(("message", "field"), [
    ({"poll": {"question": "Q", "options": ["a", "A"]}}, "poll.options"),
    ({"poll": {"question": "Q", "options": ["only"]}}, "poll.options"),
    ({"poll": {"question": "Q", "options": ["a", "b"], "selectableCount": 2}},
     "poll.selectableCount"),
    ({"poll": {"question": "Q", "options": ["a", ""]}}, "poll.options.1"),
    ({"location": {"latitude": 91, "longitude": 0}}, "location.latitude"),
    ({"contact": {"name": "A\nTEL:1", "phone": "+4915112345678"}}, "contact.name"),
    ({"text": "a", "image": {"url": "https://example.com/x.png"}}, "image"),
    ({"text": "hi", "mentions": ["120363000000000001@g.us"]}, "mentions.0"),
])
def test_malformed_kinds_are_422(api: Callable[..., Harness], message: dict[str, Any],
                                 field: str) -> None:
    h = api()
    status, _, body = send(h, message)
    assert status == 422 and body["field"] == field, body
    assert h.client.sent == []


# --- replies, mentions, reactions, edits, deletes ------------------------------------------------


def test_a_reply_quotes_a_message_the_bot_received_and_mentions(
        api: Callable[..., Harness]) -> None:
    h = api()
    ev = h.say("where is my order?", chat="15550001111")
    wait_for(lambda: h.worker.sender.recent.find("15550001111@s.whatsapp.net", ev.Info.ID)
             is not None, what="the message remembered")
    status, _, body = send(h, {"text": "on its way @4915112345678", "replyTo": ev.Info.ID,
                               "mentions": ["4915112345678"]})
    assert status == 200, body
    ext = last(h).extendedTextMessage
    assert ext.text == "on its way @4915112345678"
    info = ext.contextInfo
    assert info.stanzaID == ev.Info.ID and info.participant == "15550001111@s.whatsapp.net"
    assert info.quotedMessage.conversation == "where is my order?"
    assert list(info.mentionedJID) == ["4915112345678@s.whatsapp.net"]
    # an image can reply too
    status, _, _ = upload(h, {"image": {}, "replyTo": ev.Info.ID}, files.png())
    assert status == 200 and last(h).imageMessage.contextInfo.stanzaID == ev.Info.ID
    # a received photo is quoted with its caption
    photo = wa.event(wa.media("image", b"\xff\xd8\xff\xe0" + bytes(64), "image/jpeg",
                              caption="is this the one?"), chat="15550001111")
    h.feed(photo)
    wait_for(lambda: h.worker.sender.recent.find("15550001111@s.whatsapp.net", photo.Info.ID)
             is not None, what="the photo remembered")
    assert send(h, {"text": "yes", "replyTo": photo.Info.ID})[0] == 200
    quote = last(h).extendedTextMessage.contextInfo
    assert quote.stanzaID == photo.Info.ID
    assert quote.quotedMessage.conversation == "is this the one?"


def test_reactions_edits_and_deletes_act_on_known_messages_only(
        api: Callable[..., Harness]) -> None:
    h = api()
    ev = h.say("hello", chat="15550001111")
    wait_for(lambda: len(h.worker.sender.recent) > 0, what="remembered")
    assert send(h, {"reaction": {"messageId": ev.Info.ID, "emoji": "👍"}})[0] == 200
    react = last(h).reactionMessage
    assert react.key.ID == ev.Info.ID and react.text == "👍" and not react.key.fromMe
    assert send(h, {"reaction": {"messageId": ev.Info.ID, "emoji": ""}})[0] == 200
    assert last(h).reactionMessage.text == ""  # the reaction removed

    status, _, body = send(h, {"reaction": {"messageId": "3EB0NOSUCHMESSAGE", "emoji": "👍"}})
    assert status == 404 and body["error"] == "message_not_found"
    assert body["field"] == "reaction.messageId"

    status, _, sent = send(h, {"text": "typo hree"})
    assert status == 200
    assert send(h, {"edit": {"messageId": sent["messageId"], "text": "typo here"}})[0] == 200
    edited = last(h).editedMessage.message.protocolMessage
    assert sent["messageId"] == edited.key.ID and edited.key.fromMe
    assert edited.editedMessage.conversation == "typo here"
    status, _, body = send(h, {"edit": {"messageId": ev.Info.ID, "text": "x"}})
    assert status == 422 and "own messages" in body["message"]

    assert send(h, {"reaction": {"messageId": sent["messageId"], "emoji": "✅"}})[0] == 200
    assert last(h).reactionMessage.key.fromMe  # a reaction to the bot's own message
    assert send(h, {"delete": {"messageId": sent["messageId"]}})[0] == 200
    revoke = last(h).protocolMessage
    assert revoke.type == revoke.REVOKE and sent["messageId"] == revoke.key.ID
    assert revoke.key.fromMe
    assert send(h, {"delete": {"messageId": "3EB0GONE"}})[0] == 404
    assert h.metric("wabot_sends_total", type="reaction", result="sent") == 3
    assert h.metric("wabot_sends_total", type="edit", result="sent") == 1
    assert h.metric("wabot_sends_total", type="delete", result="sent") == 1


# --- chat actions -------------------------------------------------------------------------------


def test_mark_read_and_presence(api: Callable[..., Harness]) -> None:
    h = api()
    ev = h.say("read me", chat="15550001111")
    wait_for(lambda: len(h.worker.sender.recent) > 0, what="remembered")
    status, _, body = call(h, "/v1/chats/15550001111/read",
                           json.dumps({"messageIds": [ev.Info.ID]}).encode())
    assert status == 200 and body["chat"] == "15550001111@s.whatsapp.net", body
    assert h.client.receipts[-1] == ("15550001111", "15550001111", (ev.Info.ID,))
    status, _, body = call(h, "/v1/chats/120363000000000001@g.us/read",
                           json.dumps({"messageIds": ["3EB0UNSEEN"]}).encode())
    assert status == 422 and body["field"] == "sender"
    for state, expected in [("typing", (0, 0)), ("recording", (0, 1)), ("paused", (1, 0))]:
        status, _, body = call(h, "/v1/chats/15550001111/presence",
                               json.dumps({"state": state}).encode())
        assert status == 200, body
        assert h.client.presences[-1] == ("15550001111", *expected)
    status, _, body = call(h, "/v1/chats/15550001111/presence", b'{"state": "dancing"}')
    assert status == 422 and body["field"] == "state"
    status, _, body = call(h, "/v1/chats/not-a-chat/presence", b'{"state": "typing"}')
    assert status == 422 and body["field"] == "chat"
    assert h.metric("wabot_sends_total", type="presence", result="sent") == 3


def test_every_kind_is_fenced_and_rate_limited(make_worker: Callable[..., Harness]) -> None:
    from wabot.spec import WhatsAppBotSpec

    spec = WhatsAppBotSpec.model_validate({"serverName": "tenant-a", "botId": "bot-a",
                                           "rateLimit": {"perChatPerMinute": 2}})
    h = make_worker(spec, env={"WABOT_API_TOKEN": TOKEN})
    assert send(h, {"location": {"latitude": 1, "longitude": 2}})[0] == 200
    assert upload(h, {"image": {}}, files.png())[0] == 200
    status, headers, _ = upload(h, {"image": {}}, files.png())
    assert status == 429 and int(headers["Retry-After"]) >= 1
    status, _, _ = call(h, "/v1/chats/15550001111/presence", b'{"state": "typing"}')
    assert status == 429
    assert len(h.client.uploads) == 1  # refused before the upload
    assert h.metric("wabot_sends_total", type="image", result="rate_limited") == 1
