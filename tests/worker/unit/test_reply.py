"""A command's reply quotes it exactly as neonize's own `build_reply_message` would, for every
kind of message a command can arrive in, and leaves the received message as it was (neonize's
builder clears its quote and mentions in place)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from botworker.runtime.reply import build_reply
from tests.support import wamessages as wa

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """neonize's real client, never connected: only its builders are used."""
    from neonize.client import NewClient

    path: Path = tmp_path_factory.mktemp("neonize") / "session.sqlite3"
    yield NewClient(str(path))


def _copy(ev: Any) -> Any:
    copy = type(ev)()
    copy.CopyFrom(ev)
    return copy


QUOTED: dict[str, Callable[[Any], Any]] = {
    "text": lambda c: wa.event(wa.text("!ping")),
    "extended text with a quote and mentions": lambda c: wa.event(wa.extended(
        "!ping @15550002222", quoted_id="Q1", quoted_sender="15550002222@s.whatsapp.net",
        mentions=("15550002222@s.whatsapp.net",), forwarded=True)),
    "image caption": lambda c: wa.event(wa.media("image", JPEG, "image/jpeg", caption="!ping",
                                                 width=640, height=480)),
    "video caption": lambda c: wa.event(wa.media("video", b"\x00\x00\x00\x18ftypmp42",
                                                 "video/mp4", caption="!ping", seconds=3)),
    "document caption, whatsmeow-unwrapped": lambda c: wa.delivered(wa.document_with_caption(
        wa.media("document", b"%PDF-1.7", "application/pdf", caption="!ping"))),
    "view-once image, still wrapped": lambda c: wa.event(wa.view_once(
        wa.media("image", JPEG, "image/jpeg", caption="!ping"))),
    "voice note": lambda c: wa.event(wa.media("voice", b"OggS" + b"\x00" * 64,
                                              "audio/ogg; codecs=opus", seconds=2)),
    "location": lambda c: wa.event(wa.location(52.52, 13.40, "Office")),
    "contacts": lambda c: wa.event(wa.contacts(("Ann", "+15550001111"),
                                               ("Bob", "+15550002222"))),
    "poll (with its messageContextInfo)": lambda c: wa.event(wa.poll(c, "Lunch?",
                                                                     ["pizza", "sushi"])),
    "key share riding along": lambda c: wa.event(_with_key_share(wa.text("!ping"))),
    "group, from an @lid with the phone number beside it": lambda c: wa.event(
        wa.text("!ping"), chat="120363000000000001", group=True, sender="987654321",
        sender_server="lid", sender_alt=wa.jid("15550003333")),
    "group, from an @lid alone": lambda c: wa.event(
        wa.text("!ping"), chat="120363000000000001", group=True, sender="987654321",
        sender_server="lid"),
}


def _with_key_share(message: Any) -> Any:
    E = wa.e2e()
    message.senderKeyDistributionMessage.CopyFrom(
        E.SenderKeyDistributionMessage(groupID="123-456@g.us",
                                       axolotlSenderKeyDistributionMessage=b"k"))
    return message


@pytest.mark.parametrize("kind", list(QUOTED))
@pytest.mark.parametrize("text", ["pong", "", "ask @15550004444 and @0, not @12"])
def test_the_reply_is_neonizes_byte_for_byte(client: Any, kind: str, text: str) -> None:
    ev = QUOTED[kind](client)
    expected = client.build_reply_message(text, _copy(ev)).SerializeToString(
        deterministic=True)
    assert build_reply(client, text, ev).SerializeToString(deterministic=True) == expected


@pytest.mark.parametrize("kind", list(QUOTED))
def test_the_received_message_is_left_as_it_came(client: Any, kind: str) -> None:
    ev = QUOTED[kind](client)
    before = ev.SerializeToString(deterministic=True)
    reply = build_reply(client, "pong", ev)
    assert ev.SerializeToString(deterministic=True) == before
    assert reply.extendedTextMessage.contextInfo.stanzaID == ev.Info.ID


def test_the_quote_of_a_quote_is_not_repeated(client: Any) -> None:
    ev = QUOTED["extended text with a quote and mentions"](client)
    quote = build_reply(client, "pong", ev).extendedTextMessage.contextInfo
    assert quote.quotedMessage.extendedTextMessage.text == "!ping @15550002222"
    # Cleared, as neonize clears it (an empty contextInfo stays on the wire).
    assert quote.quotedMessage.extendedTextMessage.contextInfo.ListFields() == []
    assert list(quote.mentionedJID) == []
    assert ev.Message.extendedTextMessage.contextInfo.stanzaID == "Q1"


def test_a_message_with_no_content_cannot_be_quoted(client: Any) -> None:
    """Then the sender answers without the quote (sender.py's QuoteUnusable)."""
    with pytest.raises(ValueError, match="no content"):
        build_reply(client, "pong", wa.event(wa.e2e().Message()))
