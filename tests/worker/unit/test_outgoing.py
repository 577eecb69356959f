"""The pure parts of sending every kind (issue 24): the request model, the multipart reader,
the media checks by the bytes, the memory of recent messages, and what the worker imports
before it sends any media."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from botworker.core import multipart
from botworker.core.outgoing import InvalidContent, check_media, sniff
from botworker.core.recent import Known, RecentMessages
from tests.support import media_files as files
from wabot.api import SendMessageRequest

# --- the model ---------------------------------------------------------------------------------


def field_of(body: str, **context: bool) -> str:
    with pytest.raises(ValidationError) as err:
        SendMessageRequest.model_validate_json(body, context=context)
    return ".".join(str(p) for p in err.value.errors()[0]["loc"])


def test_one_kind_per_request_and_text_stays_as_it_was() -> None:
    req = SendMessageRequest.model_validate_json('{"to": "+15550001111", "text": "hi"}')
    assert (req.kind, req.chat) == ("text", "15550001111@s.whatsapp.net")
    assert field_of('{"to": "15550001111"}') == "text"
    assert field_of('{"to": "15550001111", "text": "a", "poll": {"question": "q", '
                    '"options": ["a", "b"]}}') == "poll"
    assert field_of('{"to": "15550001111", "reaction": {"messageId": "A", "emoji": "x"}, '
                    '"replyTo": "B"}') == "replyTo"
    assert field_of('{"to": "15550001111", "audio": {"url": "https://x/a.mp3", '
                    '"caption": "c"}}') == "audio.caption"
    assert field_of('{"to": "15550001111", "video": {"url": "https://x/a", '
                    '"fileName": "a"}}') == "video.fileName"
    assert field_of('{"to": "15550001111", "image": {"url": "ftp://x/a.png"}}') == "image.url"
    assert field_of('{"to": "15550001111", "image": {"url": "https://x/a.png"}}',
                    upload=True) == "image.url"


def test_the_fingerprint_covers_the_uploaded_bytes() -> None:
    req = SendMessageRequest.model_validate_json('{"to": "15550001111", "image": {}}',
                                                 context={"upload": True})
    assert req.fingerprint("aa") != req.fingerprint("bb")
    assert req.fingerprint("aa") == req.fingerprint("aa")


# --- multipart ---------------------------------------------------------------------------------


def test_multipart_parts_come_out_whole() -> None:
    body, ctype = files.multipart(b'{"to": "1"}', files.png(), filename="chart.png",
                                  content_type="image/png")
    boundary = multipart.boundary_of(ctype)
    assert boundary == "wabot-test-boundary"
    parts = multipart.parse(body, boundary)
    assert parts["message"].data == b'{"to": "1"}'
    assert (parts["file"].data, parts["file"].filename, parts["file"].content_type) == (
        files.png(), "chart.png", "image/png")
    # a file that itself contains CRLF and dashes is not cut short
    tricky = b"\r\n--wabot\r\n--" * 50
    body, _ = files.multipart(b"{}", tricky)
    assert multipart.parse(body, boundary)["file"].data == tricky
    assert multipart.boundary_of("application/json") is None


@pytest.mark.parametrize(("mangle", "field"), [
    (lambda b: b[:-30], "file"),  # truncated
    (lambda b: b.replace(b'name="file"', b'name="message"'), "message"),  # twice
    (lambda b: b.replace(b'name="file"', b'name="evil"'), "body"),
    (lambda b: b.replace(b"form-data; ", b"attachment; ", 1), "body"),
    (lambda b: b"garbage" + b, "body"),
    (lambda b: b.split(b"\r\n\r\n", 1)[0] + b"X" * 9000, "body"),  # headers never end
])
def test_malformed_multipart_is_refused_naming_the_part(mangle: object, field: str) -> None:
    body, _ = files.multipart(b"{}", b"data")
    assert callable(mangle)
    with pytest.raises(multipart.MultipartError) as err:
        multipart.parse(mangle(body), "wabot-test-boundary")
    assert err.value.field == field


def test_a_bad_boundary_is_refused() -> None:
    for ctype in ("multipart/form-data", 'multipart/form-data; boundary=""',
                  "multipart/form-data; boundary=" + "x" * 71):
        with pytest.raises(multipart.MultipartError):
            multipart.boundary_of(ctype)


# --- media checks ------------------------------------------------------------------------------


def test_the_bytes_decide_what_a_file_is() -> None:
    assert check_media("image", "file", files.jpeg(), None) == "image/jpeg"
    assert check_media("image", "file", files.png(), "application/octet-stream") == "image/png"
    assert check_media("voice", "file", files.ogg_opus(), "audio/ogg; codecs=opus") == \
        "audio/ogg"
    assert check_media("document", "file", files.pdf(), None) == "application/pdf"
    assert check_media("document", "file", b"a,b\n", "text/csv") == "text/csv"
    assert sniff(files.mp4()) == "video/mp4" and sniff(files.mp3()) == "audio/mpeg"
    assert sniff(b"\xff\xf1\x50\x80") == "audio/aac" and sniff(b"plain") is None


@pytest.mark.parametrize(("kind", "data", "declared", "words"), [
    ("image", files.pdf(), None, "application/pdf"),
    ("image", files.jpeg(), "image/png", "declared as image/png"),
    ("image", b"\xff\xd8\xff" + bytes(5 * 1024 * 1024), None, "at most 5242880"),
    ("voice", files.png(), None, "must be audio"),
    ("sticker", files.mp4(), None, "WebP"),
    ("document", b"", None, "empty"),
])
def test_what_whatsapp_would_refuse_is_refused(kind: str, data: bytes, declared: str | None,
                                               words: str) -> None:
    with pytest.raises(InvalidContent, match=words) as err:
        check_media(kind, "file", data, declared)
    assert err.value.field == "file"


# --- recent messages ---------------------------------------------------------------------------


def test_recent_messages_are_bounded_and_cut_short() -> None:
    recent = RecentMessages(capacity=3)
    for i in range(5):
        recent.remember(Known("c@s.whatsapp.net", f"M{i}", "u@s.whatsapp.net", False,
                              "x" * 1000))
    assert len(recent) == 3
    assert recent.find("c@s.whatsapp.net", "M0") is None
    known = recent.find("c@s.whatsapp.net", "M4")
    assert known is not None and len(known.text) == 256
    assert recent.find("other@s.whatsapp.net", "M4") is None  # ids are per chat


def test_an_idle_worker_loads_no_media_code() -> None:
    code = ("import sys, botworker.worker\n"
            "print(sorted(m for m in ('botworker.runtime.outgoing', 'PIL', 'magic')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_media_sends_share_a_memory_budget() -> None:
    from botworker.core.outgoing import Outgoing
    from botworker.runtime.media_source import MediaBusy, MediaSource
    from wabot.api import Media

    source = MediaSource(budget_bytes=48 << 20, wait_s=0.05)

    def doc(mib: int) -> Outgoing:
        return Outgoing("document", Media(), data=bytes(mib << 20))

    with source.slot(doc(32)):
        with source.slot(doc(8)):  # 40 MiB in flight: fits
            pass
        with pytest.raises(MediaBusy), source.slot(doc(32)):
            pass
        url = Outgoing("video", Media(url="https://example.com/v.mp4"))
        with source.slot(url):  # a URL holds its kind's limit (16 MiB) until fetched
            pass
    with source.slot(doc(32)):  # freed
        pass
