"""What a message neonize delivers *is*: one of the kinds of `wabot.events`, read from the
waE2E `Message` protobuf and its `MessageInfo`. Pure and total.

Everything here reads attributes of protobuf objects (no neonize import: the core does no I/O),
and a stranger controls every byte of them: a kind nobody knows becomes type "unknown", a
field of the wrong shape becomes "absent", strings with invalid UTF-8 are repaired, nothing
raises. WhatsApp wraps content (ephemeral, view-once, document-with-caption, device-sent,
edited): whatsmeow unwraps most of it before neonize sees it, and `unwrap` does the rest, so
messages built either way classify alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from .protoread import get as _get
from .protoread import has as _has
from .protoread import integer as _int
from .protoread import jid_string
from .protoread import number as _float
from .protoread import optional_int as _opt
from .protoread import present as _present
from .protoread import text as _t

if TYPE_CHECKING:  # built on first use (event data: pydantic, which a text bot never loads)
    from wabot.events import (
        ContactData,
        EditedData,
        LocationData,
        MessageData,
        MessageType,
        PollData,
        QuotedData,
        ReactionData,
        RevokedData,
    )

# waE2E ProtocolMessage.Type values (stable wire numbers).
PROTOCOL_REVOKE = 0
PROTOCOL_EDIT = 14
_MAX_WRAPS = 6  # a wrapper inside a wrapper inside ...: bounded, whatever arrives
_MAX_LIST = 64  # mentions, contacts, poll options: WhatsApp's own limits are far below this
# Wrappers whose `.message` is the real content, and what each says about the message.
_WRAPPERS = {
    "ephemeralMessage": "ephemeral", "viewOnceMessage": "view_once",
    "viewOnceMessageV2": "view_once", "viewOnceMessageV2Extension": "view_once",
    "documentWithCaptionMessage": "", "deviceSentMessage": "", "botInvokeMessage": "",
    "groupMentionedMessage": "", "lottieStickerMessage": "", "editedMessage": "",
}
_POLL_FIELDS = ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3",
                "pollCreationMessageV5", "pollCreationMessageV6")
# Fields that ride along with any content and are not a kind of their own.
_ENVELOPE_FIELDS = frozenset({"messageContextInfo", "senderKeyDistributionMessage",
                              "fastRatchetKeySenderKeyDistributionMessage"})
_TEL_RE = re.compile(r"^(?:item\d+\.)?TEL[^:]*:(.+)$", re.IGNORECASE | re.MULTILINE)
_WAID_RE = re.compile(r"waid=(\d{5,20})")


@dataclass(frozen=True)
class Envelope:
    """Who sent what, where, when: read once from MessageInfo by the runtime."""

    chat: str
    sender: str
    push_name: str
    message_id: str
    is_group: bool
    timestamp_ms: int
    sender_phone: str | None = None
    sender_lid: str | None = None

    def fields(self) -> dict[str, Any]:
        """The `_FromChat` fields of every incoming event."""
        return {
            "chat": self.chat, "sender": self.sender, "push_name": self.push_name,
            "message_id": self.message_id, "is_group": self.is_group,
            "timestamp": _when(self.timestamp_ms),
            "sender_phone": self.sender_phone, "sender_lid": self.sender_lid,
        }


def _when(timestamp_ms: int) -> datetime | None:
    """The message's time; None when absent or not a representable date."""
    if timestamp_ms <= 0:
        return None
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000.0, UTC)
    except (OverflowError, ValueError, OSError):
        return None


@dataclass
class Incoming:
    """A `message`: its `type` and `text` (the text or caption commands are read from) at
    once; `data`, the webhook event's model (media status "metadata" until the runtime
    decides), only when asked for: a bot with no `message` webhook and a command that never
    reads ctx.message never pay for building it. `content` is the unwrapped waE2E Message
    (what neonize's download_any takes)."""

    type: MessageType
    text: str
    content: Any
    kind: str = field(default="", repr=False)
    envelope: Envelope | None = field(default=None, repr=False)
    flags: _Flags | None = field(default=None, repr=False)
    _data: MessageData | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> MessageData:
        if self._data is None:
            assert self.envelope is not None and self.flags is not None
            self._data = _message_data(self.content, self.kind, self.envelope, self.flags)
        return self._data

    def replace_data(self, data: MessageData) -> None:
        """The runtime's version of the event (its media downloaded, or dropped)."""
        self._data = data


@dataclass(frozen=True)
class PollVote:
    """An encrypted poll vote: the runtime decrypts it with the poll's secret (neonize), then
    names the options when it knows the poll."""

    envelope: Envelope
    poll_message_id: str
    poll_chat: str
    poll_sender: str | None


@dataclass(frozen=True)
class Skipped:
    """Not a message for anyone: key shares, history-sync notices, a malformed update."""

    reason: str


Classified: TypeAlias = "Incoming | ReactionData | EditedData | RevokedData | PollVote | Skipped"


@dataclass
class _Flags:
    view_once: bool = False
    ephemeral: bool = False
    wrappers: list[str] = field(default_factory=list)


def identities(source: Any) -> tuple[str | None, str | None]:
    """(phone JID, @lid JID) of a MessageSource's sender. whatsmeow puts the addressing form
    of the chat in Sender and the other form, when the server sent it, in SenderAlt."""
    phone = lid = None
    for jid in (_get(source, "Sender"), _get(source, "SenderAlt")):
        text = jid_string(jid) if jid is not None else None
        if text is None:
            continue
        if text.endswith("@lid") and lid is None:
            lid = text
        elif text.endswith("@s.whatsapp.net") and phone is None:
            phone = text
    return phone, lid


def classify(message: Any, envelope: Envelope, *, ev_flags: Any = None) -> Classified:
    """The kind of one delivered message. `ev_flags` is neonize's MessageEv (IsViewOnce,
    IsEphemeral, ... as whatsmeow set them when it unwrapped the message itself)."""
    content, flags = unwrap(message)
    if ev_flags is not None:
        flags.view_once |= any(bool(_get(ev_flags, f, False)) for f in
                               ("IsViewOnce", "IsViewOnceV2", "IsViewOnceV2Extension"))
        flags.ephemeral |= bool(_get(ev_flags, "IsEphemeral", False))
    if content is None:
        return Skipped("empty")
    present = _present(content)
    if "protocolMessage" in present:
        return _protocol(content.protocolMessage, envelope)
    if "reactionMessage" in present:
        return _reaction(content.reactionMessage, envelope)
    if "pollUpdateMessage" in present:
        return _poll_update(content.pollUpdateMessage, envelope)
    kinds = [name for name in present if name not in _ENVELOPE_FIELDS]
    if not kinds:
        return Skipped("empty")
    body = _get(content, kinds[0])
    return Incoming(_type_of(kinds[0], body), _text_in(kinds[0], body), content, kinds[0],
                    envelope, flags)


def unwrap(message: Any) -> tuple[Any, _Flags]:
    """The content inside any wrappers, and what the wrappers said (bounded depth)."""
    flags = _Flags()
    for _ in range(_MAX_WRAPS):
        present = _present(message)
        name = next((n for n in present if n in _WRAPPERS), None)
        if name is None or (len(set(present) - _ENVELOPE_FIELDS) > 1):
            return message, flags
        inner = _get(_get(message, name), "message")
        if inner is None or not _present(inner):
            return message, flags
        flag = _WRAPPERS[name]
        if flag:
            setattr(flags, flag, True)
        flags.wrappers.append(name)
        message = inner
    return message, flags


def _protocol(proto: Any, env: Envelope) -> Classified:
    from wabot.events import EditedData, RevokedData

    kind = _get(proto, "type", None)
    key = _get(proto, "key")
    target = _t(_get(key, "ID", ""))
    if kind == PROTOCOL_REVOKE:
        if not target:
            return Skipped("malformed_revoke")
        return RevokedData(**env.fields(), target_message_id=target,
                           target_sender=_key_sender(key, env))
    if kind == PROTOCOL_EDIT:
        edited, _ = unwrap(_get(proto, "editedMessage"))
        if not target or edited is None or not _present(edited):
            return Skipped("malformed_edit")
        return EditedData(**env.fields(), target_message_id=target,
                          text=_text_of(edited))
    return Skipped("protocol")


def _reaction(reaction: Any, env: Envelope) -> Classified:
    from wabot.events import ReactionData

    key = _get(reaction, "key")
    target = _t(_get(key, "ID", ""))
    if not target:
        return Skipped("malformed_reaction")
    emoji = _t(_get(reaction, "text", ""))[:32]
    return ReactionData(**env.fields(), target_message_id=target,
                        target_sender=_key_sender(key, env), emoji=emoji, removed=not emoji)


def _poll_update(update: Any, env: Envelope) -> Classified:
    key = _get(update, "pollCreationMessageKey")
    target = _t(_get(key, "ID", ""))
    vote = _get(update, "vote")
    if not target or not _get(vote, "encPayload", b"") or not _get(vote, "encIV", b""):
        return Skipped("malformed_poll")
    return PollVote(env, target, env.chat, _key_sender(key, env))


def _key_sender(key: Any, env: Envelope) -> str | None:
    """Who wrote the message a key names. The key is written from the point of view of the
    update's sender: `fromMe` means the sender's own message; otherwise, in a group, its
    `participant`, and in a one-to-one chat the other side, the bot (None)."""
    participant = _t(_get(key, "participant", ""))
    if participant:
        return participant
    if bool(_get(key, "fromMe", False)):
        return env.sender
    return None


def _message_data(content: Any, kind: str, env: Envelope, flags: _Flags) -> MessageData:
    from wabot.events import MessageData  # when asked for (Incoming.data)

    body = _get(content, kind)
    mtype, extra = _kind(kind, body)
    caption = extra.pop("caption", None)
    text = _text_in(kind, body)
    ctx = _get(body, "contextInfo") if _has(body, "contextInfo") else None
    return MessageData(
        **env.fields(), text=text, type=mtype, caption=caption, **extra,
        quoted=_quoted(ctx), mentions=_mentions(ctx), forwarded=_forwarded(ctx),
        view_once=flags.view_once or bool(_get(body, "viewOnce", False)),
        ephemeral=flags.ephemeral,
    )


_SIMPLE_TYPES: dict[str, MessageType] = {
    "conversation": "text", "extendedTextMessage": "text", "imageMessage": "image",
    "videoMessage": "video", "ptvMessage": "video", "documentMessage": "document",
    "stickerMessage": "sticker", "liveLocationMessage": "live_location",
    "contactMessage": "contact", "contactsArrayMessage": "contacts",
    **{name: "poll" for name in _POLL_FIELDS},
}


def _type_of(kind: str, body: Any) -> MessageType:
    """The MessageType of a content field, without reading the rest of it."""
    if kind == "audioMessage":
        return "voice" if bool(_get(body, "PTT", False)) else "audio"
    if kind == "locationMessage":
        return "live_location" if bool(_get(body, "isLive", False)) else "location"
    return _SIMPLE_TYPES.get(kind, "unknown")


def _kind(kind: str, body: Any) -> tuple[MessageType, dict[str, Any]]:
    """The MessageType of a content field, and its kind-specific fields."""
    if kind in ("conversation", "extendedTextMessage"):
        return "text", {}
    if kind in ("imageMessage", "videoMessage", "ptvMessage", "audioMessage",
                "documentMessage", "stickerMessage"):
        return _media_kind(kind, body)
    if kind == "locationMessage":
        live = bool(_get(body, "isLive", False))
        return ("live_location" if live else "location"), {"location": _location(body)}
    if kind == "liveLocationMessage":
        return "live_location", {"location": _location(body)}
    if kind == "contactMessage":
        return "contact", {"contacts": [_contact(body)]}
    if kind == "contactsArrayMessage":
        cards = list(_get(body, "contacts", []) or [])[:_MAX_LIST]
        return "contacts", {"contacts": [_contact(c) for c in cards]}
    if kind in _POLL_FIELDS:
        return "poll", {"poll": _poll(body)}
    return "unknown", {}


def _media_kind(kind: str, body: Any) -> tuple[MessageType, dict[str, Any]]:
    from wabot.events import MediaData

    mtype: MessageType
    if kind == "audioMessage":
        mtype = "voice" if bool(_get(body, "PTT", False)) else "audio"
    elif kind == "ptvMessage":
        mtype = "video"
    else:
        mtype = {"imageMessage": "image", "videoMessage": "video", "documentMessage": "document",
                 "stickerMessage": "sticker"}[kind]  # type: ignore[assignment]
    caption = (_t(_get(body, "caption", "")) or None) if kind != "audioMessage" else None
    digest = _get(body, "fileSHA256", b"")
    animated = None
    if kind == "stickerMessage":
        animated = bool(_get(body, "isAnimated", False))
    elif kind == "videoMessage":
        animated = bool(_get(body, "gifPlayback", False))
    media = MediaData(
        mimetype=_t(_get(body, "mimetype", "")) or None,
        file_name=(_t(_get(body, "fileName", "")) or None) if kind == "documentMessage" else None,
        size=_opt(body, "fileLength"),
        sha256=digest.hex() if isinstance(digest, bytes) and digest else None,
        seconds=_opt(body, "seconds"),
        width=_opt(body, "width"),
        height=_opt(body, "height"),
        animated=animated,
    )
    return mtype, {"media": media, "caption": caption}


def _location(body: Any) -> LocationData:
    from wabot.events import LocationData

    return LocationData(
        latitude=_float(_get(body, "degreesLatitude", 0.0)),
        longitude=_float(_get(body, "degreesLongitude", 0.0)),
        name=_t(_get(body, "name", "")) or None,
        address=_t(_get(body, "address", "")) or None,
        url=_t(_get(body, "URL", "")) or None,
        accuracy_meters=_opt(body, "accuracyInMeters"),
        caption=_t(_get(body, "caption", "")) or _t(_get(body, "comment", "")) or None,
        sequence_number=_opt(body, "sequenceNumber"),
    )


def _contact(body: Any) -> ContactData:
    from wabot.events import ContactData

    vcard = _t(_get(body, "vcard", ""))[:16384]
    phones = []
    for line in _TEL_RE.findall(vcard)[:_MAX_LIST]:
        waid = _WAID_RE.search(line)
        number = waid.group(1) if waid else "".join(ch for ch in line if ch.isdigit())
        if number:
            phones.append(number)
    return ContactData(display_name=_t(_get(body, "displayName", "")), vcard=vcard, phones=phones)


def _poll(body: Any) -> PollData:
    from wabot.events import PollData

    options = [_t(_get(o, "optionName", "")) for o in
               list(_get(body, "options", []) or [])[:_MAX_LIST]]
    return PollData(name=_t(_get(body, "name", "")), options=options,
                    selectable_count=_int(_get(body, "selectableOptionsCount", 0)) or 0)


_CAPTIONED = frozenset({"imageMessage", "videoMessage", "documentMessage", "ptvMessage"})


def _text_of(content: Any) -> str:
    """The text a command is read from: the text, or a media message's caption."""
    kinds = [n for n in _present(content) if n not in _ENVELOPE_FIELDS]
    return _text_in(kinds[0], _get(content, kinds[0])) if kinds else ""


def _text_in(kind: str, body: Any) -> str:
    if kind == "conversation":
        return _t(body)
    if kind == "extendedTextMessage":
        return _t(_get(body, "text", ""))
    if kind in _CAPTIONED:
        return _t(_get(body, "caption", ""))
    return ""


def _quoted(ctx: Any) -> QuotedData | None:
    from wabot.events import QuotedData

    stanza = _t(_get(ctx, "stanzaID", ""))
    if not stanza:
        return None
    return QuotedData(message_id=stanza, sender=_t(_get(ctx, "participant", "")) or None)


def _mentions(ctx: Any) -> list[str]:
    raw = list(_get(ctx, "mentionedJID", []) or [])[:_MAX_LIST]
    return [m for m in (_t(x) for x in raw) if m]


def _forwarded(ctx: Any) -> bool:
    return bool(_get(ctx, "isForwarded", False)) or (_int(_get(ctx, "forwardingScore", 0)) or 0) > 0
