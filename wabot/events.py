"""The webhook deliveries a bot's worker posts to a tenant's receiver (README, "Receiving
webhooks" and "Messages"), as typed models: the worker builds them, tests and Python receivers
import them.

Kept apart from the send API (`wabot.api`): these are what the bot tells the tenant, those what
the tenant asks of the bot. pydantic only, no I/O.

Schema version 2 (issue 24) adds the message kinds: `message` carries `type` and the kind's
fields, and reactions, edits, deletions and poll votes are events of their own. Version 1
receivers keep working: every version 1 field is still there with the same meaning (`text` is
the text, or the caption of a media message, or "").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .api import _Model
from .webhook_signing import SIGNATURE_PREFIX as SIGNATURE_PREFIX
from .webhook_signing import sign as sign
from .webhook_signing import verify as verify

WebhookEventType = Literal["message", "command", "connection", "pairing", "message.reaction",
                           "message.edited", "message.revoked", "poll.vote",
                           # the account's events (issue 25)
                           "message.ack", "presence.update", "group.join", "group.leave",
                           "group.update", "call", "session.status"]
# The `version` of every payload; bumped when a field changes meaning or goes away (adding an
# optional field does not bump it).
SCHEMA_VERSION: Literal[2] = 2

MessageType = Literal["text", "image", "video", "audio", "voice", "document", "sticker",
                      "location", "live_location", "contact", "contacts", "poll", "unknown"]
MEDIA_TYPES: frozenset[str] = frozenset({"image", "video", "audio", "voice", "document",
                                         "sticker"})
# What became of a media message's file (spec.media.download decides what is tried):
# metadata: not downloaded (download "metadata" or "none"); stored: downloaded, verified,
# fetchable at `url`; too_large: over spec.media.maxBytes; refused: the bytes contradict the
# message (size, sha256 or type; `error` says which); no_space: the bot's media quota or
# volume is full; failed: the download failed (`error`).
MediaStatus = Literal["metadata", "stored", "too_large", "refused", "no_space", "failed"]


class MediaData(_Model):
    """A media message's file, as the message declares it, and what the bot did with it."""

    mimetype: str | None = None
    file_name: str | None = None
    size: int | None = Field(default=None, description="Declared size in bytes")
    sha256: str | None = Field(default=None, description="Declared SHA-256 of the file, hex")
    seconds: int | None = Field(default=None, description="Audio/video duration")
    width: int | None = None
    height: int | None = None
    animated: bool | None = Field(default=None, description="Stickers and GIF videos")
    status: MediaStatus = "metadata"
    error: str | None = Field(default=None, description="Why status is not stored/metadata")
    id: str | None = Field(default=None, description="The stored file's id (status stored)")
    url: str | None = Field(default=None, description=(
        "Where the tenant downloads the stored file: the gateway path "
        "/v1/bots/{namespace}/{bot}/media/{id} (authenticated like every gateway call)"))


class LocationData(_Model):
    """A location pin, or one update of a live location."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None
    accuracy_meters: int | None = None
    caption: str | None = Field(default=None, description="Live locations")
    sequence_number: int | None = Field(default=None, description="Live locations")


class ContactData(_Model):
    """One shared contact card."""

    display_name: str
    vcard: str
    phones: list[str] = Field(default_factory=list,
                              description="Phone numbers read from the vCard's TEL lines")


class PollData(_Model):
    """A poll the sender created; votes arrive as `poll.vote` events naming this message."""

    name: str
    options: list[str]
    selectable_count: int = Field(description="0: any number of options")


class QuotedData(_Model):
    """The message this one replies to."""

    message_id: str
    sender: str | None = None


class _FromChat(_Model):
    """Who wrote what, where: the fields every incoming event has."""

    chat: str
    sender: str
    push_name: str = ""
    message_id: str
    is_group: bool = False
    timestamp: datetime | None = None
    sender_phone: str | None = Field(default=None, description=(
        "The sender's phone number JID (…@s.whatsapp.net) when WhatsApp told it"))
    sender_lid: str | None = Field(default=None, description=(
        "The sender's privacy id (…@lid) when WhatsApp told it"))


class MessageData(_FromChat):
    """`message`: an incoming message that passed the bot's filters."""

    text: str = Field(description="The text, or a media message's caption, or empty")
    type: MessageType = "text"
    caption: str | None = None
    media: MediaData | None = None
    location: LocationData | None = None
    contacts: list[ContactData] = Field(default_factory=list)
    poll: PollData | None = None
    quoted: QuotedData | None = None
    mentions: list[str] = Field(default_factory=list)
    forwarded: bool = False
    view_once: bool = False
    ephemeral: bool = False


class ReactionData(_FromChat):
    """`message.reaction`: an emoji on a message, or its removal (`emoji` empty). The target
    may be a message the bot never saw."""

    target_message_id: str
    target_sender: str | None = Field(default=None, description=(
        "Who wrote the target message; null: the bot itself"))
    emoji: str
    removed: bool


class EditedData(_FromChat):
    """`message.edited`: the sender changed the text (or caption) of an earlier message."""

    target_message_id: str
    text: str


class RevokedData(_FromChat):
    """`message.revoked`: an earlier message was deleted for everyone (by its sender, or by a
    group admin: then `sender` differs from `targetSender`)."""

    target_message_id: str
    target_sender: str | None = Field(default=None, description=(
        "Who wrote the deleted message; null: the bot itself"))


class PollVoteData(_FromChat):
    """`poll.vote`: the sender's current choice in a poll (an empty list: they withdrew).
    Options are named when the bot knows the poll, else only their hashes are given."""

    poll_message_id: str
    selected_options: list[str] = Field(default_factory=list)
    selected_hashes: list[str] = Field(default_factory=list,
                                       description="SHA-256 of each selected option, hex")


class CommandData(_Model):
    """`command`: a command the bot handled, and how it went."""

    chat: str
    sender: str
    message_id: str
    command: str
    args: list[str]
    result: str = Field(description="ok, error, db_unavailable, unknown_command, "
                                    "rate_limited, rejected")
    latency_ms: int


class ConnectionData(_Model):
    """`connection`: the WhatsApp session changed state."""

    state: str
    previous_state: str
    last_error: str | None = None
    account: str | None = None


class PairingData(_Model):
    """`pairing`: a QR payload or a pairing code is ready for a human."""

    method: Literal["qr", "code"]
    qr: str | None = None
    code: str | None = None
    expires_at: datetime | None = None


# --- the account's events (issue 25): receipts, presence, groups, calls, the session ----------


class AckData(_Model):
    """`message.ack`: a receipt for messages the bot sent: `sent` (reached WhatsApp, seen by
    the account's other devices), `delivered`, `read`, `played` (a voice note or video)."""

    chat: str
    sender: str = Field(description="Who sent the receipt (the reader, in a group)")
    message_ids: list[str]
    status: Literal["sent", "delivered", "read", "played"]
    timestamp: datetime | None = None


class PresenceData(_Model):
    """`presence.update`: a contact came online or went offline (`kind` presence: after the
    bot subscribed to them), or someone is typing / recording in a chat (`kind` chat)."""

    kind: Literal["presence", "chat"]
    jid: str = Field(description="The contact (presence) or the chat (chat)")
    sender: str | None = Field(default=None, description="Who is typing (chat)")
    available: bool | None = None
    last_seen: datetime | None = None
    state: Literal["composing", "recording", "paused"] | None = None


class GroupEventData(_Model):
    """`group.join` (participants joined or were added; the bot itself when it joined),
    `group.leave` (left or were removed), `group.update` (subject, description, settings,
    admins, invite link). Only what changed is set."""

    group: str
    by: str | None = Field(default=None, description="Who made the change, when known")
    participants: list[str] = Field(default_factory=list)
    reason: str | None = None
    name: str | None = None
    topic: str | None = None
    announce: bool | None = None
    locked: bool | None = None
    ephemeral_seconds: int | None = None
    promoted: list[str] = Field(default_factory=list)
    demoted: list[str] = Field(default_factory=list)
    invite_link_changed: bool = False
    deleted: bool = False
    timestamp: datetime | None = None


class CallData(_Model):
    """`call`: an incoming call offer; `rejected` says what the bot did with it (null:
    settings.rejectCalls is off, so it rang; false: declining it failed)."""

    call_id: str
    caller: str
    timestamp: datetime | None = None
    rejected: bool | None = None


class SessionStatusData(_Model):
    """`session.status`: every change of the session's state (the phase the status shows),
    with the last session action (log out, restart, pairing) and its outcome."""

    state: str
    previous_state: str
    last_error: str | None = None
    error_reason: str | None = None
    account: str | None = None
    session_action: dict[str, Any] | None = None


EventData = Annotated[MessageData | CommandData | ConnectionData | PairingData | ReactionData
                      | EditedData | RevokedData | PollVoteData | AckData | PresenceData
                      | GroupEventData | CallData | SessionStatusData,
                      Field(union_mode="left_to_right")]

# Which model each event's `data` is (the payload picks it by `event`, not by trial).
EVENT_DATA: dict[str, type[_Model]] = {
    "message": MessageData, "command": CommandData, "connection": ConnectionData,
    "pairing": PairingData, "message.reaction": ReactionData, "message.edited": EditedData,
    "message.revoked": RevokedData, "poll.vote": PollVoteData,
    "message.ack": AckData, "presence.update": PresenceData, "group.join": GroupEventData,
    "group.leave": GroupEventData, "group.update": GroupEventData, "call": CallData,
    "session.status": SessionStatusData,
}


class WebhookPayload(_Model):
    """The JSON body of every delivery. `id` is also the X-Wabot-Delivery header: the same
    across retries of one event, so a receiver dedupes by it (delivery is at least once)."""

    id: str
    version: Literal[2] = Field(default=SCHEMA_VERSION, description=(
        "The payload's schema version: 2 since the message kinds (type, media, reactions, "
        "edits, deletions, poll votes); a delivery without it is version 1"))
    event: WebhookEventType
    bot: str
    server_name: str
    created_at: datetime
    data: EventData

    @model_validator(mode="before")
    @classmethod
    def _data_by_event(cls, raw: Any) -> Any:
        """Several data models share their required fields: `event` says which one it is."""
        if not isinstance(raw, dict):
            return raw
        model = EVENT_DATA.get(str(raw.get("event")))
        data = raw.get("data")
        if model is None or isinstance(data, model):
            return raw
        if isinstance(data, _Model):
            raise ValueError(f"event {raw.get('event')} carries {type(data).__name__}")
        return {**raw, "data": model.model_validate(data)}
