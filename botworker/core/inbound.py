"""What a message neonize delivers *is*: one of the kinds of `wabot.events`, read from the
waE2E `Message` protobuf and its `MessageInfo`. Pure and total.

Everything here reads attributes of protobuf objects (no neonize import: the core does no I/O),
and a stranger controls every byte of them: a kind nobody knows becomes type "unknown", a
field of the wrong shape becomes "absent", strings with invalid UTF-8 are repaired, nothing
raises. WhatsApp wraps content (ephemeral, view-once, document-with-caption, device-sent,
edited): whatsmeow unwraps most of it before neonize sees it, and `unwrap` does the rest, so
messages built either way classify alike.

`read` runs on every message the pipeline takes, so it lists a message's fields once and
builds no event data: inbound_event.py writes a message's `MessageData` when a webhook or a
command asks (`Incoming.data`), and a reaction's, edit's or deletion's model is built by
`Update.build` only for a webhook that wants it. `classify` is `read` with updates built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from . import inbound_event
from .inbound_event import POLL_FIELDS, text_in
from .protoread import fields as _fields
from .protoread import get as _get
from .protoread import jid_string
from .protoread import text as _t

if TYPE_CHECKING:  # built on first use (wabot/event_view.py's classes)
    from wabot.event_view import EditedData, MessageData, ReactionData, RevokedData
    from wabot.events import MessageType

# waE2E ProtocolMessage.Type values (stable wire numbers).
PROTOCOL_REVOKE = 0
PROTOCOL_EDIT = 14
_MAX_WRAPS = 6  # a wrapper inside a wrapper inside ...: bounded, whatever arrives
# Wrappers whose `.message` is the real content, and what each says about the message.
_WRAPPERS = {
    "ephemeralMessage": "ephemeral", "viewOnceMessage": "view_once",
    "viewOnceMessageV2": "view_once", "viewOnceMessageV2Extension": "view_once",
    "documentWithCaptionMessage": "", "deviceSentMessage": "", "botInvokeMessage": "",
    "groupMentionedMessage": "", "lottieStickerMessage": "", "editedMessage": "",
}
# Fields that ride along with any content and are not a kind of their own.
_ENVELOPE_FIELDS = frozenset({"messageContextInfo", "senderKeyDistributionMessage",
                              "fastRatchetKeySenderKeyDistributionMessage"})
_VIEW_ONCE_FLAGS = ("IsViewOnce", "IsViewOnceV2", "IsViewOnceV2Extension")


class Envelope(NamedTuple):
    """Who sent what, where, when: read once from MessageInfo by the runtime. A tuple (as
    immutable as a frozen dataclass): one is made per message, in 1.3 us instead of 2.0."""

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
    (what neonize's download_any takes), `body` its content field named `kind`."""

    type: MessageType
    text: str
    content: Any
    kind: str = field(default="", repr=False)
    envelope: Envelope | None = field(default=None, repr=False)
    flags: _Flags | None = field(default=None, repr=False)
    _data: MessageData | None = field(default=None, repr=False, compare=False)
    body: Any = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> MessageData:
        if self._data is None:
            assert self.envelope is not None and self.flags is not None
            body = self.body if self.body is not None else _get(self.content, self.kind)
            self._data = inbound_event.message_data(
                body, self.kind, self.envelope.fields(), view_once=self.flags.view_once,
                ephemeral=self.flags.ephemeral)
        return self._data

    def replace_data(self, data: MessageData) -> None:
        """The runtime's version of the event (its media downloaded, or dropped)."""
        self._data = data

    def poll_options(self) -> list[str]:
        """A poll's option names, read from the protobuf (the event is not built for it)."""
        if self.type != "poll":
            return []
        body = self.body if self.body is not None else _get(self.content, self.kind)
        return inbound_event.poll_options(body)


@dataclass(frozen=True)
class Update:
    """A reaction, an edit or a deletion, read and checked: its event's name and metrics label
    at once, its event data (wabot/event_view.py) only from `build()`: a bot with no webhook
    for it never builds one."""

    event: str
    label: str
    build: Callable[[], ReactionData | EditedData | RevokedData] = field(repr=False)


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
Read: TypeAlias = "Incoming | Update | PollVote | Skipped"


@dataclass(frozen=True)
class _Flags:
    view_once: bool = False
    ephemeral: bool = False
    wrappers: tuple[str, ...] = ()


_NO_FLAGS = _Flags()


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
    """The kind of one delivered message, updates as their event data (`read` with the
    updates built)."""
    out = read(message, envelope, ev_flags=ev_flags)
    return out.build() if isinstance(out, Update) else out


def read(message: Any, envelope: Envelope, *, ev_flags: Any = None) -> Read:
    """The kind of one delivered message, what the pipeline runs on every message: the
    protobuf's populated fields are listed once (ListFields), the first content field is the
    kind. `ev_flags` is neonize's MessageEv (IsViewOnce, IsEphemeral, ... as whatsmeow set
    them when it unwrapped the message itself)."""
    content, present, flags = _unwrap(message, _fields(message))
    if ev_flags is not None:
        view_once, ephemeral = _ev_flags(ev_flags)
        if view_once or ephemeral:
            flags = _Flags(flags.view_once or view_once, flags.ephemeral or ephemeral,
                           flags.wrappers)
    first: tuple[str, Any] | None = None
    for name, body in present:
        # Field numbers: protocolMessage 12 < reactionMessage 46 < pollUpdateMessage 50, so
        # the first update field found is also the one that wins over the others.
        update = _UPDATES.get(name)
        if update is not None:
            return update(body, envelope)
        if first is None and name not in _ENVELOPE_FIELDS:
            first = (name, body)
    if first is None:
        return Skipped("empty")
    kind, body = first
    return Incoming(_type_of(kind, body), text_in(kind, body), content, kind, envelope, flags,
                    body=body)


def _ev_flags(ev: Any) -> tuple[bool, bool]:
    """(view once, ephemeral) as whatsmeow flagged them on the MessageEv."""
    try:
        return (bool(ev.IsViewOnce or ev.IsViewOnceV2 or ev.IsViewOnceV2Extension),
                bool(ev.IsEphemeral))
    except (AttributeError, TypeError, ValueError):  # not a MessageEv: field by field
        return (any(bool(_get(ev, f, False)) for f in _VIEW_ONCE_FLAGS),
                bool(_get(ev, "IsEphemeral", False)))


def unwrap(message: Any) -> tuple[Any, _Flags]:
    """The content inside any wrappers, and what the wrappers said (bounded depth)."""
    content, _, flags = _unwrap(message, _fields(message))
    return content, flags


def _unwrap(message: Any, present: list[tuple[str, Any]]
            ) -> tuple[Any, list[tuple[str, Any]], _Flags]:
    """`unwrap`, given the message's (name, value) fields; returns the content's."""
    for first, _ in present:
        if first in _WRAPPERS:
            break
    else:
        return message, present, _NO_FLAGS  # nearly every message: no wrapper at all
    view_once = ephemeral = False
    wrappers: list[str] = []
    for _ in range(_MAX_WRAPS):
        name, wrapper, contents = "", None, 0
        for field_name, value in present:  # one pass, no generator expressions
            if field_name not in _ENVELOPE_FIELDS:
                contents += 1
                if not name and field_name in _WRAPPERS:
                    name, wrapper = field_name, value
        if not name or contents > 1:
            break
        inner = _get(wrapper, "message")
        inner_present = _fields(inner) if inner is not None else []
        if not inner_present:
            break
        view_once |= _WRAPPERS[name] == "view_once"
        ephemeral |= _WRAPPERS[name] == "ephemeral"
        wrappers.append(name)
        message, present = inner, inner_present
    return message, present, _Flags(view_once, ephemeral, tuple(wrappers))


def _protocol(proto: Any, env: Envelope) -> Read:
    kind = _get(proto, "type", None)
    key = _get(proto, "key")
    target = _t(_get(key, "ID", ""))
    if kind == PROTOCOL_REVOKE:
        if not target:
            return Skipped("malformed_revoke")

        def revoked() -> RevokedData:
            from wabot.event_view import RevokedData

            return RevokedData(**env.fields(), target_message_id=target,
                               target_sender=_key_sender(key, env))

        return Update("message.revoked", "revoked", revoked)
    if kind == PROTOCOL_EDIT:
        wrapped = _get(proto, "editedMessage")
        edited, present, _ = _unwrap(wrapped, _fields(wrapped))
        if not target or edited is None or not present:
            return Skipped("malformed_edit")

        def edit() -> EditedData:
            from wabot.event_view import EditedData

            return EditedData(**env.fields(), target_message_id=target,
                              text=_text_of(present))

        return Update("message.edited", "edited", edit)
    return Skipped("protocol")


def _reaction(reaction: Any, env: Envelope) -> Read:
    key = _get(reaction, "key")
    target = _t(_get(key, "ID", ""))
    if not target:
        return Skipped("malformed_reaction")

    def data() -> ReactionData:
        from wabot.event_view import ReactionData

        emoji = _t(_get(reaction, "text", ""))[:32]
        return ReactionData(**env.fields(), target_message_id=target,
                            target_sender=_key_sender(key, env), emoji=emoji,
                            removed=not emoji)

    return Update("message.reaction", "reaction", data)


def _poll_update(update: Any, env: Envelope) -> Read:
    key = _get(update, "pollCreationMessageKey")
    target = _t(_get(key, "ID", ""))
    vote = _get(update, "vote")
    if not target or not _get(vote, "encPayload", b"") or not _get(vote, "encIV", b""):
        return Skipped("malformed_poll")
    return PollVote(env, target, env.chat, _key_sender(key, env))


# The update fields, in field-number order (see read()).
_UPDATES: dict[str, Callable[[Any, Envelope], Read]] = {
    "protocolMessage": _protocol, "reactionMessage": _reaction,
    "pollUpdateMessage": _poll_update}


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


_SIMPLE_TYPES: dict[str, MessageType] = {
    "conversation": "text", "extendedTextMessage": "text", "imageMessage": "image",
    "videoMessage": "video", "ptvMessage": "video", "documentMessage": "document",
    "stickerMessage": "sticker", "liveLocationMessage": "live_location",
    "contactMessage": "contact", "contactsArrayMessage": "contacts",
    **{name: "poll" for name in POLL_FIELDS},
}


def _type_of(kind: str, body: Any) -> MessageType:
    """The MessageType of a content field, without reading the rest of it."""
    if kind == "audioMessage":
        return "voice" if bool(_get(body, "PTT", False)) else "audio"
    if kind == "locationMessage":
        return "live_location" if bool(_get(body, "isLive", False)) else "location"
    return _SIMPLE_TYPES.get(kind, "unknown")


def _text_of(present: list[tuple[str, Any]]) -> str:
    """The text a command is read from, of a message's fields: the text, or a caption."""
    kinds = [(n, body) for n, body in present if n not in _ENVELOPE_FIELDS]
    return text_in(*kinds[0]) if kinds else ""
