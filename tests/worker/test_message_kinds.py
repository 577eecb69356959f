"""Every kind of incoming message as a tenant and a plugin see it (issue 24): real MessageEv
protobufs of each kind (tests/support/wamessages.py) through neonize's real dispatcher and the
real pipeline, webhook deliveries to a real HTTP receiver on 127.0.0.1, received files fetched
from the worker's real API.

The seams are the two neonize calls that need WhatsApp: `download_any` (fetching and decrypting
a file from WhatsApp's media servers) answers with the bytes the test put on "the server", and
`decrypt_poll_vote` (which reads the poll's secret through whatsmeow's connected client: before
`connect()` neonize answers "client is nil") answers what whatsmeow returns, the SHA-256 of each
chosen option.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from botworker.core.context import CommandContext
from botworker.core.registry import CommandRegistry
from tests.support import wamessages as wa
from wabot.events import WebhookPayload
from wabot.spec import WorkerState

from . import conftest as cf
from .conftest import Harness, wait_for
from .receiver import Receiver
from .test_connection import Reports
from .test_webhooks import FAST, KEY

Make = Callable[..., Harness]
TOKEN = "media-api-token-0123456789"
ALL_EVENTS = ["message", "command", "message.reaction", "message.edited", "message.revoked",
              "poll.vote"]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
OGG = b"OggS\x00\x02" + b"\x00" * 500
PDF = b"%PDF-1.7\n" + b"x" * 700


def _download_any(self: Any, message: Any, path: str | None = None) -> bytes:
    """What whatsmeow's download gives back: the decrypted file at the message's directPath,
    or the error a missing file raises."""
    from neonize.exc import DownloadError

    for fd, body in message.ListFields():
        direct = getattr(body, "directPath", "")
        if direct:
            self.downloads.append(fd.name)
            if direct in self.files:
                return bytes(self.files[direct])
    raise DownloadError("media not found (404)")


def _decrypt_poll_vote(self: Any, message: Any) -> Any:
    from neonize.exc import DecryptPollVoteError
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import PollVoteMessage

    chosen = self.votes.get(message.Info.ID)
    if chosen is None:
        raise DecryptPollVoteError("failed to decrypt poll vote: no secret for this poll")
    return PollVoteMessage(selectedOptions=[hashlib.sha256(o.encode()).digest()
                                            for o in chosen])


@pytest.fixture
def make_media_worker(make_worker: Make, monkeypatch: pytest.MonkeyPatch) -> Make:
    """make_worker whose recording client also answers the two calls above."""
    real = cf.recording_client

    def with_media(path: str) -> Any:
        client = real(path)
        client.__class__ = type("MediaRecording", (type(client),),
                                {"download_any": _download_any,
                                 "decrypt_poll_vote": _decrypt_poll_vote})
        client.files, client.votes, client.downloads = {}, {}, []
        return client

    monkeypatch.setattr(cf, "recording_client", with_media)
    return make_worker


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(KEY.encode()).start()
    yield r
    r.stop()


def spec(url: str, media: dict[str, Any] | None = None, **kw: Any) -> Any:
    from wabot.spec import WhatsAppBotSpec

    return WhatsAppBotSpec.model_validate({
        "serverName": "tenant-a", "botId": "bot-a",
        "webhook": {"url": url, "secretRef": {"name": "hook"}, "events": ALL_EVENTS},
        "media": media or {}, **kw})


def events(receiver: Receiver, n: int) -> list[Any]:
    """The deliveries so far (at least n), parsed as a receiver would (data: any event's)."""
    wait_for(lambda: len(receiver.unique()) >= n, what=f"{n} deliveries")
    out = [WebhookPayload.model_validate_json(d.body) for d in receiver.unique().values()]
    assert all(p.version == 2 for p in out)
    return out


def feed(h: Harness, message: Any, **kw: Any) -> Any:
    ev = wa.event(message, **kw)
    h.feed(ev)
    return ev


def put_file(h: Harness, message: Any, data: bytes) -> None:
    for _, body in message.ListFields():
        h.client.files[body.directPath] = data


def api_get(h: Harness, path: str, token: str = TOKEN) -> tuple[int, dict[str, str], bytes]:
    assert h.worker.http is not None
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def full(h_env: dict[str, str] | None = None) -> dict[str, str]:
    return {**FAST, "WABOT_API_TOKEN": TOKEN, **(h_env or {})}


# --- every kind, as a webhook receiver sees it --------------------------------------------


def test_each_kind_arrives_typed_and_updates_are_their_own_events(
        make_media_worker: Make, receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url), env=FAST)
    poll = wa.poll(h.client, "Lunch?", ["pizza", "sushi"])
    sent = [
        wa.text("hello"),
        wa.media("image", JPEG, "image/jpeg", caption="a photo"),
        wa.media("voice", OGG, "audio/ogg; codecs=opus", seconds=3),
        wa.media("document", PDF, "application/pdf", file_name="r.pdf"),
        wa.media("sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        wa.location(52.5, 13.4, "Office"),
        wa.location(52.5, 13.4, "moving", live=True),
        wa.contact("Ann", "+15550001111"),
        wa.contacts(("Ann", "+15550001111"), ("Bob", "+15550002222")),
        poll,
        wa.view_once(wa.media("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")),
        wa.e2e().Message(eventMessage=wa.e2e().EventMessage(name="party")),
    ]
    for m in sent:
        feed(h, m)
    got = events(receiver, len(sent))
    kinds = [(p.event, p.data.type) for p in got]
    assert kinds == [("message", t) for t in (
        "text", "image", "voice", "document", "sticker", "location", "live_location",
        "contact", "contacts", "poll", "video", "unknown")]
    image = got[1].data
    assert image.caption == "a photo" and image.text == "a photo"
    assert image.media.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert image.media.status == "metadata"  # the default: described, not downloaded
    assert got[10].data.view_once is True
    assert h.client.downloads == []
    for t in ("text", "image", "voice", "unknown", "poll"):
        assert h.metric("wabot_messages_received_by_type_total", type=t) == 1
    assert h.client.sent == []  # none of them is a command


def test_reactions_edits_deletions_and_votes_are_events_never_commands(
        make_media_worker: Make, receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url), env=FAST)
    chat = "15550001111"
    poll_ev = feed(h, wa.poll(h.client, "Lunch?", ["pizza", "sushi", "salad"], selectable=2))
    vote = wa.event(wa.poll_vote(poll_ev.Info.ID, f"{chat}@s.whatsapp.net"), chat=chat)
    h.client.votes[vote.Info.ID] = ["sushi", "salad"]
    h.feed(vote)
    # A reaction "!ping" to a message that never existed: an event, not a command.
    h.feed(wa.event(wa.reaction(h.client, chat, chat, "NO-SUCH-MESSAGE", "!ping"), chat=chat))
    h.feed(wa.event(wa.edit(chat, "M0", "!ping"), chat=chat))
    h.feed(wa.event(wa.revoke(chat, chat, "M0", chat), chat=chat))
    got = events(receiver, 5)
    assert [p.event for p in got] == ["message", "poll.vote", "message.reaction",
                                      "message.edited", "message.revoked"]
    voted = got[1].data
    assert voted.poll_message_id == poll_ev.Info.ID
    assert voted.selected_options == ["sushi", "salad"]
    assert got[2].data.target_message_id == "NO-SUCH-MESSAGE"
    assert got[2].data.emoji == "!ping"
    assert got[3].data.text == "!ping"
    assert got[4].data.target_message_id == "M0"
    h.settle()
    assert h.client.sent == []
    for t in ("reaction", "edited", "revoked", "poll_vote"):
        assert h.metric("wabot_messages_received_by_type_total", type=t) == 1


def test_a_vote_on_the_bots_own_poll_names_the_options(make_media_worker: Make,
                                                        receiver: Receiver) -> None:
    """A poll the bot sent through the API is remembered when it goes out (Sender's after-send
    hook), so the tenant's poll.vote says what was chosen, not only the options' hashes."""
    h = make_media_worker(spec(receiver.url), env={**FAST, "WABOT_API_TOKEN": TOKEN})
    assert h.worker.http is not None
    body = b'{"to": "15550001111", "poll": {"question": "Lunch?", "options": ["pizza", "sushi"]}}'
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}/v1/messages",
                                 data=body, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        poll_id = json.loads(resp.read())["messageId"]
    chat = "15550001111"
    vote = wa.event(wa.poll_vote(poll_id, f"{chat}@s.whatsapp.net"), chat=chat)
    h.client.votes[vote.Info.ID] = ["sushi"]
    h.feed(vote)
    (voted,) = [p for p in events(receiver, 1) if p.event == "poll.vote"]
    assert voted.data.poll_message_id == poll_id
    assert voted.data.selected_options == ["sushi"]


def test_votes_that_cannot_be_decrypted_and_malformed_updates_are_counted(
        make_media_worker: Make, receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url), env=FAST)
    feed(h, wa.poll_vote("UNKNOWN-POLL", "15550001111@s.whatsapp.net"))  # no secret
    feed(h, wa.poll_vote("", "15550001111@s.whatsapp.net"))  # no poll named
    E = wa.e2e()
    feed(h, E.Message(protocolMessage=E.ProtocolMessage(type=E.ProtocolMessage.REVOKE)))
    feed(h, E.Message(protocolMessage=E.ProtocolMessage(
        type=E.ProtocolMessage.APP_STATE_SYNC_KEY_SHARE)))
    feed(h, wa.text("still alive"))
    got = events(receiver, 1)
    h.settle()
    assert [p.event for p in got] == ["message"]
    assert h.metric("wabot_messages_dropped_total", reason="poll_vote_undecryptable") == 1
    assert h.metric("wabot_messages_dropped_total", reason="malformed_poll") == 1
    assert h.metric("wabot_messages_dropped_total", reason="malformed_revoke") == 1
    assert h.metric("wabot_messages_dropped_total", reason="protocol") == 1


def test_sender_identities_replies_mentions_and_groups(make_media_worker: Make,
                                                      receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url, settings={"ignoreGroups": False}), env=FAST)
    msg = wa.extended("@bob look", quoted_id="Q1", quoted_sender="15550002222@s.whatsapp.net",
                      mentions=("15550002222@s.whatsapp.net",), forwarded=True)
    feed(h, msg, chat="120363000000000001", group=True, sender="987654321",
         sender_server="lid", sender_alt=wa.jid("15550003333"))
    (p,) = events(receiver, 1)
    d = p.data
    assert d.is_group and d.chat == "120363000000000001@g.us"
    assert d.sender_lid == "987654321@lid"
    assert d.sender_phone == "15550003333@s.whatsapp.net"
    assert d.quoted.message_id == "Q1"
    assert d.mentions == ["15550002222@s.whatsapp.net"]
    assert d.forwarded is True


# --- commands and plugins -------------------------------------------------------------------


def _kind(ctx: CommandContext) -> str:
    m = ctx.message
    assert m is not None
    media = ctx.media()
    return (f"type={m.type} mime={m.media.mimetype if m.media else None} "
            f"status={m.media.status if m.media else None} bytes={len(media or b'')}")


def register_kind(registry: CommandRegistry) -> None:
    registry.command("kind", _kind)


def _after_reply(ctx: CommandContext) -> str:
    ctx.reply("first")
    m = ctx.message
    assert m is not None
    return f"quoted={m.quoted.message_id if m.quoted else None} mentions={m.mentions}"


def register_after(registry: CommandRegistry) -> None:
    registry.command("after", _after_reply)


def test_a_handler_still_sees_the_quote_and_mentions_after_replying(
        make_media_worker: Make) -> None:
    """Quoting the command in the reply must not change the message the handler reads
    (neonize's own reply builder clears the quoted message's quote and mentions in place).
    No `message` webhook: the handler's ctx.message is the first to read the message."""
    from wabot.spec import WhatsAppBotSpec

    eps = [EntryPoint("after", f"{__name__}:register_after", "wabot.plugins")]
    h = make_media_worker(WhatsAppBotSpec.model_validate({
        "serverName": "tenant-a", "botId": "bot-a", "commands": {"plugins": ["after"]}}),
        env=FAST, plugins=eps)
    msg = wa.extended("!after", quoted_id="Q1", quoted_sender="15550002222@s.whatsapp.net",
                      mentions=("15550002222@s.whatsapp.net",))
    before = len(h.client.sent)
    ev = feed(h, msg)
    wait_for(lambda: len(h.client.sent) >= before + 2, what="both replies")
    first, second = h.client.replies()[before:before + 2]
    assert first == ("15550001111", "first", ev.Info.ID)
    assert second == ("15550001111", "quoted=Q1 mentions=['15550002222@s.whatsapp.net']",
                      ev.Info.ID)
    quote = h.client.sent[before][1].extendedTextMessage.contextInfo.quotedMessage
    assert quote.extendedTextMessage.text == "!after"


def test_commands_work_in_captions_and_plugins_see_type_and_media(
        make_media_worker: Make, receiver: Receiver) -> None:
    eps = [EntryPoint("kind", f"{__name__}:register_kind", "wabot.plugins")]
    h = make_media_worker(spec(receiver.url, media={"download": "full"},
                               commands={"plugins": ["kind"]}),
                          env=full(), plugins=eps)
    image = wa.media("image", JPEG, "image/jpeg", caption="!kind")
    put_file(h, image, JPEG)
    before = len(h.client.sent)
    ev = feed(h, image)
    wait_for(lambda: len(h.client.sent) > before, what="the reply to a caption command")
    assert h.client.replies()[-1] == ("15550001111",
                                      f"type=image mime=image/jpeg status=stored "
                                      f"bytes={len(JPEG)}", ev.Info.ID)
    assert h.ask("!kind") == "type=text mime=None status=None bytes=0"
    doc = wa.document_with_caption(wa.media("document", PDF, "application/pdf",
                                            caption="!ping", file_name="r.pdf"))
    put_file(h, doc.documentWithCaptionMessage.message, PDF)
    before = len(h.client.sent)
    feed(h, doc)
    wait_for(lambda: len(h.client.sent) > before, what="ping in a document's caption")
    assert h.client.texts()[-1].startswith("pong")


# --- media in -------------------------------------------------------------------------------


def test_full_download_is_checked_stored_and_served_by_url(make_media_worker: Make,
                                                          receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url, media={"download": "full"}), env=full())
    doc = wa.media("document", PDF, "application/pdf", file_name='q"1 report.pdf')
    put_file(h, doc, PDF)
    feed(h, doc)
    (p,) = events(receiver, 1)
    media = p.data.media
    assert media.status == "stored" and media.id and media.error is None
    # Outside Kubernetes the URL is the worker's own; on a cluster the gateway's.
    assert media.url == f"/v1/media/{media.id}"
    status, headers, body = api_get(h, media.url)
    assert (status, body) == (200, PDF)
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == 'attachment; filename="q_1 report.pdf"'
    assert api_get(h, media.url, token="wrong-token-0123456789")[0] == 401
    assert api_get(h, "/v1/media/not-an-id")[0] == 404
    assert api_get(h, "/v1/media/..%2F..%2Fsession.sqlite3")[0] == 404
    assert h.metric("wabot_media_downloads_total", result="stored") == 1
    assert h.metric("wabot_media_stored_bytes") == len(PDF)


@pytest.mark.parametrize(("kind", "data", "mime", "declare", "status", "error"), [
    # declared 1 KiB, 600 bytes arrive
    ("document", PDF[:600], "application/pdf", {"declared_size": 1024}, "refused", "truncated"),
    # the bytes are not the file the message hashed
    ("image", JPEG, "image/jpeg", {"declared_sha256": b"\x00" * 32}, "refused",
     "sha256_mismatch"),
    # a "photo" that is a PDF, a "voice note" that is a program
    ("image", PDF, "image/jpeg", {}, "refused", "type_mismatch"),
    ("voice", b"\x7fELF\x02\x01\x01" + b"\x00" * 300, "audio/ogg", {}, "refused",
     "type_mismatch"),
    # declared over maxBytes: never downloaded
    ("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4", {"declared_size": 5 * 1024 * 1024},
     "too_large", "declared_size_over_max_bytes"),
    # declared small, arrives over maxBytes
    ("document", PDF * 2000, "application/pdf", {"declared_size": 100}, "too_large",
     "over_max_bytes"),
])
def test_lying_truncated_and_oversized_media_are_refused(
        make_media_worker: Make, receiver: Receiver, kind: str, data: bytes, mime: str,
        declare: dict[str, Any], status: str, error: str) -> None:
    h = make_media_worker(spec(receiver.url, media={"download": "full",
                                                    "maxBytes": 1024 * 1024}), env=full())
    message = wa.media(kind, data, mime, **declare)
    put_file(h, message, data)
    feed(h, message)
    feed(h, wa.text("after"))
    first, after = events(receiver, 2)
    media = first.data.media
    assert (media.status, media.error, media.url) == (status, error, None)
    assert after.data.text == "after"
    assert h.metric("wabot_media_downloads_total", result=status) == 1
    media_dir = h.worker.cfg.session_dir / "media"
    assert not media_dir.exists() or not list(media_dir.glob("*.bin"))


def test_a_download_that_fails_leaves_the_message(make_media_worker: Make,
                                                  receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url, media={"download": "full"}), env=full())
    feed(h, wa.media("image", JPEG, "image/jpeg", caption="gone"))  # not on "the server"
    (p,) = events(receiver, 1)
    assert p.data.media.status == "failed"
    assert p.data.text == "gone"


def test_download_none_and_metadata(make_media_worker: Make, receiver: Receiver) -> None:
    h = make_media_worker(spec(receiver.url, media={"download": "none"}), env=full())
    image = wa.media("image", JPEG, "image/jpeg", caption="c")
    put_file(h, image, JPEG)
    feed(h, image)
    (p,) = events(receiver, 1)
    assert (p.data.type, p.data.media, p.data.caption) == ("image", None, "c")
    assert h.client.downloads == []


def test_quota_drops_the_oldest_and_a_full_volume_degrades_without_crashing(
        make_media_worker: Make, receiver: Receiver) -> None:
    quota = 2 * 1024 * 1024
    reports = Reports()
    h = make_media_worker(spec(receiver.url, media={"download": "full", "quotaBytes": quota,
                                                    "maxBytes": 1024 * 1024}), env=full(),
                          reporter=reports)
    blob = PDF + b"y" * (900 * 1024)
    ids = []
    for i in range(3):
        doc = wa.media("document", blob + bytes([i]), "application/pdf")
        put_file(h, doc, blob + bytes([i]))
        feed(h, doc)
        ids.append(events(receiver, i + 1)[i].data.media.id)
    assert api_get(h, f"/v1/media/{ids[0]}")[0] == 404  # the oldest made room
    assert api_get(h, f"/v1/media/{ids[2]}")[0] == 200
    # The volume fills up: the next file is refused, the bot says so, keeps running.
    store = h.worker.pipeline.kinds.store
    assert store is not None
    store._free = lambda _path: 1024
    doc = wa.media("document", PDF, "application/pdf")
    put_file(h, doc, PDF)
    feed(h, doc)
    got = events(receiver, 4)[3].data.media
    assert (got.status, got.error) == ("no_space", "VolumeFull")
    # status.worker.media says so (the operator turns it into Degraded=True) ...
    def full_report() -> Any:
        last = reports.last if reports.items else None
        return last if last is not None and last.media and last.media.full else None

    report = wait_for(full_report, what="a report naming the full media storage")
    assert report.media.reason == "VolumeFull" and report.media.files == 2
    assert report.state is WorkerState.CONNECTED
    # ... while the bot answers, and its session and state are untouched.
    assert h.ask("!ping").startswith("pong")
    assert h.worker.ready()[0]
    # Room again: the next file is kept and the report clears.
    store._free = lambda _path: 10 * 1024**3
    doc = wa.media("document", PDF + b"z", "application/pdf")
    put_file(h, doc, PDF + b"z")
    feed(h, doc)
    last = wait_for(lambda: [p for p in events(receiver, 7) if p.event == "message"
                             and p.data.media and p.data.text == ""][4:], what="the 5th file")
    assert last[0].data.media.status == "stored"
    wait_for(lambda: not full_report(), what="the report cleared")

