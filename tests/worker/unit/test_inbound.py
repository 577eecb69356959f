"""Every kind of incoming message, built with neonize's own protobuf classes and builders, read
by botworker.core.inbound into the webhook model (wabot.events) a tenant receives."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botworker.core import inbound, protoread
from botworker.core.inbound import Envelope, Incoming, PollVote, Skipped
from tests.support import wamessages as wa
from wabot.event_view import EditedData, ReactionData, RevokedData

ENV = Envelope(chat="15550001111@s.whatsapp.net", sender="15550001111@s.whatsapp.net",
               push_name="Ann", message_id="M1", is_group=False, timestamp_ms=1_700_000_000_000)
GROUP = Envelope(chat="123-456@g.us", sender="15550002222@s.whatsapp.net", push_name="Bob",
                 message_id="G1", is_group=True, timestamp_ms=1_700_000_000_000)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """neonize's real client, never connected: only its builders are used."""
    from neonize.client import NewClient

    path: Path = tmp_path_factory.mktemp("neonize") / "session.sqlite3"
    yield NewClient(str(path))


def message(msg: Any, env: Envelope = ENV) -> Any:
    out = inbound.classify(msg, env)
    assert isinstance(out, Incoming), out
    # What the pipeline reads at once agrees with the event built later.
    assert (out.type, out.text) == (out.data.type, out.data.text)
    return out.data


def test_text_and_extended_text() -> None:
    d = message(wa.text("hello"))
    assert (d.type, d.text, d.caption, d.media) == ("text", "hello", None, None)
    assert d.push_name == "Ann" and d.timestamp is not None
    d = message(wa.extended("hi @2222", quoted_id="Q9", quoted_sender="15550002222@s.whatsapp.net",
                            mentions=("15550002222@s.whatsapp.net",), forwarded=True), GROUP)
    assert (d.type, d.text, d.is_group) == ("text", "hi @2222", True)
    assert d.quoted is not None and d.quoted.message_id == "Q9"
    assert d.quoted.sender == "15550002222@s.whatsapp.net"
    assert d.mentions == ["15550002222@s.whatsapp.net"]
    assert d.forwarded is True


@pytest.mark.parametrize(("kind", "mimetype", "expected"), [
    ("image", "image/jpeg", "image"), ("video", "video/mp4", "video"),
    ("audio", "audio/mpeg", "audio"), ("voice", "audio/ogg; codecs=opus", "voice"),
    ("document", "application/pdf", "document"), ("sticker", "image/webp", "sticker"),
])
def test_media_kinds_carry_what_the_message_declares(kind: str, mimetype: str,
                                                     expected: str) -> None:
    data = b"\x00payload" * 10
    d = message(wa.media(kind, data, mimetype, caption="look", file_name="a.pdf", seconds=4,
                         width=640, height=480))
    assert d.type == expected
    assert d.media is not None
    assert d.media.mimetype == mimetype
    assert d.media.size == len(data)
    assert d.media.sha256 == hashlib.sha256(data).hexdigest()
    assert d.media.status == "metadata" and d.media.url is None
    if kind in ("image", "video", "document"):
        # Commands keep working on captions: the caption is the text.
        assert d.caption == "look" and d.text == "look"
    else:
        assert d.caption is None and d.text == ""
    assert d.media.file_name == ("a.pdf" if kind == "document" else None)


def test_document_with_caption_wrapper_and_view_once_and_ephemeral_are_unwrapped() -> None:
    doc = wa.media("document", b"%PDF-1.4", "application/pdf", caption="!ping",
                   file_name="r.pdf")
    d = message(wa.document_with_caption(doc))
    assert (d.type, d.text, d.media.file_name) == ("document", "!ping", "r.pdf")
    d = message(wa.view_once(wa.media("image", b"x", "image/jpeg"), v2=True))
    assert (d.type, d.view_once) == ("image", True)
    d = message(wa.view_once(wa.media("video", b"x", "video/mp4"), v2=False))
    assert (d.type, d.view_once) == ("video", True)
    d = message(wa.ephemeral(wa.text("!help")))
    assert (d.type, d.text, d.ephemeral, d.view_once) == ("text", "!help", True, False)
    d = message(wa.ephemeral(wa.view_once(wa.media("image", b"x", "image/png"))))
    assert (d.type, d.ephemeral, d.view_once) == ("image", True, True)
    d = message(wa.device_sent(wa.text("from my phone"), "15550003333@s.whatsapp.net"))
    assert (d.type, d.text) == ("text", "from my phone")


def test_whatsmeows_own_unwrapping_flags_count_too() -> None:
    ev = wa.event(wa.media("image", b"x", "image/jpeg"), view_once=True, ephemeral=True)
    out = inbound.classify(ev.Message, ENV, ev_flags=ev)
    assert isinstance(out, Incoming)
    assert (out.data.view_once, out.data.ephemeral) == (True, True)


def test_location_and_live_location() -> None:
    d = message(wa.location(52.52, 13.405, "Office"))
    assert d.type == "location" and d.location is not None
    assert (d.location.latitude, d.location.longitude, d.location.name) == (52.52, 13.405,
                                                                            "Office")
    assert d.location.address == "1 Main St"
    d = message(wa.location(1.5, -2.25, "on my way", live=True))
    assert d.type == "live_location" and d.location is not None
    assert (d.location.caption, d.location.sequence_number, d.location.accuracy_meters) == (
        "on my way", 7, 12)


def test_contact_and_contacts_read_the_phone_from_the_vcard() -> None:
    d = message(wa.contact("Ann", "+15550001111"))
    assert d.type == "contact" and len(d.contacts) == 1
    assert d.contacts[0].display_name == "Ann" and d.contacts[0].phones == ["15550001111"]
    assert d.contacts[0].vcard.startswith("BEGIN:VCARD")
    d = message(wa.contacts(("Ann", "+15550001111"), ("Bob", "+4915112345678")))
    assert d.type == "contacts"
    assert [(c.display_name, c.phones) for c in d.contacts] == [
        ("Ann", ["15550001111"]), ("Bob", ["4915112345678"])]


@pytest.mark.parametrize("version", ["pollCreationMessage", "pollCreationMessageV2",
                                     "pollCreationMessageV3"])
def test_poll_creation_every_version(client: Any, version: str) -> None:
    d = message(wa.poll(client, "Lunch?", ["pizza", "sushi", "salad"], selectable=1,
                        version=version))
    assert d.type == "poll" and d.poll is not None
    assert (d.poll.name, d.poll.options, d.poll.selectable_count) == (
        "Lunch?", ["pizza", "sushi", "salad"], 1)


def test_poll_vote_names_the_poll_for_decryption() -> None:
    out = inbound.classify(wa.poll_vote("P1", "15550009999@s.whatsapp.net"), ENV)
    assert isinstance(out, PollVote)
    assert (out.poll_message_id, out.poll_chat) == ("P1", ENV.chat)


def test_malformed_poll_votes_are_skipped_with_a_reason() -> None:
    assert inbound.classify(wa.poll_vote("", "x"), ENV) == Skipped("malformed_poll")
    assert inbound.classify(wa.poll_vote("P1", "x", payload=b""), ENV) == Skipped(
        "malformed_poll")


def test_reaction_and_its_removal(client: Any) -> None:
    out = inbound.classify(wa.reaction(client, "15550001111", "15550001111", "M0", "👍"), ENV)
    assert isinstance(out, ReactionData)
    assert (out.target_message_id, out.emoji, out.removed) == ("M0", "👍", False)
    # The reactor's key says fromMe=False about the bot's own message in a 1:1 chat.
    assert out.target_sender is None
    out = inbound.classify(wa.reaction(client, "15550001111", "15550001111", "M0", ""), ENV)
    assert isinstance(out, ReactionData) and out.removed and out.emoji == ""


def test_edit_through_neonizes_builder() -> None:
    out = inbound.classify(wa.edit("15550001111", "M0", "fixed typo"), ENV)
    assert isinstance(out, EditedData)
    assert (out.target_message_id, out.text) == ("M0", "fixed typo")


def test_revoke_by_the_sender_and_by_a_group_admin() -> None:
    me = "15550001111"
    out = inbound.classify(wa.revoke("15550001111", me, "M0", me), ENV)
    assert isinstance(out, RevokedData)
    assert (out.target_message_id, out.target_sender) == ("M0", ENV.sender)
    admin = wa.revoke("123-456", "15550004444", "G0", "15550002222", group=True)
    out = inbound.classify(admin, GROUP)
    assert isinstance(out, RevokedData)
    assert out.target_sender == "15550004444@s.whatsapp.net" != out.sender


def test_other_protocol_messages_and_key_shares_are_not_messages() -> None:
    E = wa.e2e()
    sync = E.Message(protocolMessage=E.ProtocolMessage(
        type=E.ProtocolMessage.APP_STATE_SYNC_KEY_SHARE))
    assert inbound.classify(sync, ENV) == Skipped("protocol")
    skdm = E.Message(senderKeyDistributionMessage=E.SenderKeyDistributionMessage(
        groupID="123-456@g.us"))
    assert inbound.classify(skdm, ENV) == Skipped("empty")
    assert inbound.classify(E.Message(), ENV) == Skipped("empty")
    # A key share riding along with a text: the text is the message.
    both = E.Message(conversation="!ping", senderKeyDistributionMessage=skdm.
                     senderKeyDistributionMessage)
    assert message(both).text == "!ping"


def test_unknown_kinds_are_type_unknown_never_an_error() -> None:
    E = wa.e2e()
    d = message(E.Message(eventMessage=E.EventMessage(name="party")))
    assert (d.type, d.text, d.media) == ("unknown", "", None)
    d = message(E.Message(groupInviteMessage=E.GroupInviteMessage(groupJID="1-2@g.us")))
    assert d.type == "unknown"


def test_hostile_fields_never_raise() -> None:
    E = wa.e2e()
    # Nested wrappers past any sensible depth: bounded, still classified.
    msg = wa.text("deep")
    for _ in range(50):
        msg = wa.ephemeral(msg)
    out = inbound.classify(msg, ENV)
    assert isinstance(out, Incoming)
    # A wrapper with nothing inside, an edit without a target, a NaN location.
    assert message(E.Message(ephemeralMessage=E.FutureProofMessage())).type == "unknown"
    bad_edit = E.Message(protocolMessage=E.ProtocolMessage(type=E.ProtocolMessage.MESSAGE_EDIT))
    assert inbound.classify(bad_edit, ENV) == Skipped("malformed_edit")
    bad_revoke = E.Message(protocolMessage=E.ProtocolMessage(type=E.ProtocolMessage.REVOKE))
    assert inbound.classify(bad_revoke, ENV) == Skipped("malformed_revoke")
    nan = message(wa.location(float("nan"), float("inf")))
    assert nan.location is not None and nan.location.latitude == 0.0
    # Invalid UTF-8 in a caption (protobuf hands it over as bytes when parsed from the wire).
    raw = wa.media("image", b"x", "image/jpeg", caption="ok").SerializeToString().replace(
        b"ok", b"\xff\xfe")
    parsed = E.Message.FromString(raw)
    assert message(parsed).type == "image"


def test_sender_identities_from_sender_and_sender_alt() -> None:
    lid_first = wa.info(sender="987654321", sender_server="lid",
                        sender_alt=wa.jid("15550001111")).MessageSource
    assert inbound.identities(lid_first) == ("15550001111@s.whatsapp.net", "987654321@lid")
    phone_only = wa.info(sender="15550001111").MessageSource
    assert inbound.identities(phone_only) == ("15550001111@s.whatsapp.net", None)
    device = wa.jid("15550001111")
    device.Device = 12
    assert protoread.jid_string(device) == "15550001111@s.whatsapp.net"


def test_the_idle_worker_imports_no_media_library() -> None:
    """Media handling here is plain bytes and hashes: an idle bot loads no image, audio or
    file-type library (the density benchmark's idle RSS), whatever neonize may load later."""
    import subprocess
    import sys

    code = ("import sys, botworker.worker, botworker.runtime.incoming, "
            "botworker.runtime.media_in, botworker.runtime.media_api; "
            "print(','.join(m for m in ('PIL', 'magic', 'cv2', 'numpy', 'ffmpeg', 'moviepy', "
            "'pydub', 'imageio', 'filetype') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == ""


def test_oversized_lists_and_cards_are_bounded(client: Any) -> None:
    """A stranger controls the counts: thousands of mentions, contacts or poll options, a
    megabyte vCard. The event stays small and nothing is slow or raises."""
    E = wa.e2e()
    many = wa.extended("hi", mentions=tuple(f"{n}@s.whatsapp.net" for n in range(10_000)))
    assert len(message(many).mentions) == 64
    cards = [E.ContactMessage(displayName=f"c{i}", vcard="BEGIN:VCARD\nTEL:+1555\nEND:VCARD")
             for i in range(1000)]
    d = message(E.Message(contactsArrayMessage=E.ContactsArrayMessage(contacts=cards)))
    assert d.type == "contacts" and len(d.contacts) == 64
    huge = "BEGIN:VCARD\n" + "TEL:+15550001111\n" * 100_000 + "END:VCARD"
    d = message(E.Message(contactMessage=E.ContactMessage(displayName="x", vcard=huge)))
    assert len(d.contacts[0].vcard) <= 16384 and len(d.contacts[0].phones) <= 64
    options = [E.PollCreationMessage.Option(optionName=f"o{i}") for i in range(1000)]
    d = message(E.Message(pollCreationMessageV3=E.PollCreationMessage(
        name="q", options=options, selectableOptionsCount=4_000_000_000)))
    assert d.type == "poll" and len(d.poll.options) == 64
    # A poll with no options is still a poll the tenant can see.
    d = message(E.Message(pollCreationMessage=E.PollCreationMessage(name="empty")))
    assert (d.poll.name, d.poll.options) == ("empty", [])


def test_an_impossible_timestamp_is_no_timestamp() -> None:
    far = Envelope(chat=ENV.chat, sender=ENV.sender, push_name="", message_id="T",
                   is_group=False, timestamp_ms=2**63 - 1)
    assert message(wa.text("hi"), far).timestamp is None
