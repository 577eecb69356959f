"""The send-message API (`gateway/openapi.yaml`) as typed models: what a client posts to the
gateway, what the gateway forwards to the bot's worker unchanged, and every answer either of
them gives. The webhook deliveries (what a bot tells its tenant) are `wabot.events`.

Kept in `wabot` (pydantic only, no I/O) so the gateway, the worker and tests agree on one
definition.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

# E.164 digits (an optional '+'), or a JID: a user (phone number, a LID, or an old-style
# group id "<creator>-<time>") at one of WhatsApp's servers.
RECIPIENT_PATTERN = (
    r"^(\+?[1-9][0-9]{6,14}|[0-9]{5,20}(-[0-9]{1,20})?@(s\.whatsapp\.net|g\.us|lid))$"
)
# Visible ASCII, like the keys Stripe and the IETF draft use; a UUID fits.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
MAX_TEXT = 4096

_IDEMPOTENCY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)


# --- the send-message API ----------------------------------------------------------------------


# What WhatsApp and the worker accept, checked before anything is sent (422 naming the field).
MAX_CAPTION = 1024
MAX_URL = 2048
MAX_MENTIONS = 50
# A message id as WhatsApp makes them (hex, or base32-like upper case), with room to spare.
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MIMETYPE_PATTERN = r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$"
SendKind = Literal["text", "image", "video", "audio", "voice", "document", "sticker",
                   "location", "contact", "poll", "reaction", "edit", "delete"]
# The kinds whose content is a file (from `url`, or the multipart request's `file` part).
MEDIA_KINDS: tuple[str, ...] = ("image", "video", "audio", "voice", "document", "sticker")
SEND_KINDS: tuple[str, ...] = ("text", *MEDIA_KINDS, "location", "contact", "poll",
                               "reaction", "edit", "delete")
# Plain text without control characters (vCards, file names: no line may be smuggled in).
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def _field_error(field: str, message: str, value: object = None) -> ValidationError:
    """A ValidationError located at `field`, so the 422 names it like any other."""
    return ValidationError.from_exception_data("SendMessageRequest", [InitErrorDetails(
        type=PydanticCustomError("invalid_request", message), loc=tuple(field.split(".")),
        input=value)])


class Media(_Model):
    """An image, video, audio file, voice note, document or sticker. The file comes from `url`
    (fetched by the worker under the webhook egress policy: public addresses only) or, in a
    multipart request, from its `file` part; one of the two, never both."""

    url: str | None = Field(default=None, max_length=MAX_URL, pattern=r"^https?://[!-~]+$",
                            description="http(s) URL the worker downloads the file from")
    caption: str | None = Field(default=None, min_length=1, max_length=MAX_CAPTION,
                                description="image, video and document only")
    file_name: str | None = Field(default=None, min_length=1, max_length=255,
                                  pattern=_NO_CONTROL,
                                  description="document only: the name the recipient sees")
    mimetype: str | None = Field(default=None, pattern=MIMETYPE_PATTERN, description=(
        "document: the type the recipient sees (default: read from the file); other kinds: "
        "must agree with the file's bytes, which are always checked"))
    view_once: bool = Field(default=False, description="image and video only")


class Location(_Model):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = Field(default=None, min_length=1, max_length=256, pattern=_NO_CONTROL)
    address: str | None = Field(default=None, min_length=1, max_length=512,
                                pattern=_NO_CONTROL)


class Contact(_Model):
    """A contact card (vCard 3.0, built by neonize's gen_vcard)."""

    name: str = Field(min_length=1, max_length=256, pattern=_NO_CONTROL)
    phone: str = Field(pattern=r"^\+?[1-9][0-9]{6,14}$", description="E.164 digits")


class Poll(_Model):
    question: str = Field(min_length=1, max_length=255)
    options: list[str] = Field(min_length=2, max_length=12,
                               description="2 to 12 distinct options, 1-100 characters each")
    selectable_count: int = Field(default=1, ge=0, le=1, description=(
        "1: one answer; 0: any number of answers (WhatsApp offers no other counts)"))

    @model_validator(mode="after")
    def _options(self) -> Poll:
        for i, option in enumerate(self.options):
            if not 1 <= len(option) <= 100 or not option.strip():
                raise _field_error(f"options.{i}", "an option has 1 to 100 characters",
                                   option)
        if len({o.strip().casefold() for o in self.options}) != len(self.options):
            raise _field_error("options", "the options must be distinct")
        return self


class Reaction(_Model):
    message_id: str = Field(pattern=MESSAGE_ID_PATTERN,
                            description="The message reacted to (one this bot has seen)")
    emoji: str = Field(max_length=16, description="The reaction; empty removes it")


class Edit(_Model):
    message_id: str = Field(pattern=MESSAGE_ID_PATTERN,
                            description="A text message this bot sent")
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class Delete(_Model):
    message_id: str = Field(pattern=MESSAGE_ID_PATTERN, description=(
        "A message this bot sent, or (as a group admin) any message of the group it has seen"))


class SendMessageRequest(_Model):
    """One message of one kind: exactly one of text, image, video, audio, voice, document,
    sticker, location, contact, poll, reaction, edit and delete (422 naming the field
    otherwise). A media kind takes its file from `url`, or from the `file` part of a
    multipart/form-data request whose `message` part is this JSON (then without `url`).
    `replyTo` and `mentions` go with the kinds that are messages (not reaction, edit,
    delete)."""

    to: str = Field(pattern=RECIPIENT_PATTERN, max_length=64,
                    description="E.164 digits (with or without '+') or a JID")
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    image: Media | None = None
    video: Media | None = None
    audio: Media | None = None
    voice: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: Location | None = None
    contact: Contact | None = None
    poll: Poll | None = None
    reaction: Reaction | None = None
    edit: Edit | None = None
    delete: Delete | None = None
    reply_to: str | None = Field(default=None, pattern=MESSAGE_ID_PATTERN, description=(
        "Quote this message (one this bot has seen in the chat)"))
    mentions: list[str] = Field(default_factory=list, max_length=MAX_MENTIONS, description=(
        "Phone numbers or JIDs to mention (text and captions; write @<number> in the text "
        "where the mention goes)"))

    @model_validator(mode="after")
    def _one_kind(self, info: ValidationInfo) -> SendMessageRequest:
        # A kind given as null counts as given (and is refused): the schema's oneOf says so.
        present = [k for k in SEND_KINDS if k in self.model_fields_set]
        if len(present) != 1:
            raise _field_error(present[1] if present else "text",
                               f"exactly one of {', '.join(SEND_KINDS)}" + (
                                   "" if present else " is required"))
        kind = present[0]
        if getattr(self, kind) is None:
            raise _field_error(kind, "must not be null")
        upload = bool(info.context and info.context.get("upload"))
        if kind in MEDIA_KINDS:
            self._check_media(kind, getattr(self, kind), upload)
        elif upload:
            raise _field_error("file", f"a {kind} message takes no file")
        for i, who in enumerate(self.mentions):
            if not re.match(RECIPIENT_PATTERN, who) or who.endswith("@g.us"):
                raise _field_error(f"mentions.{i}", "a phone number or a user's JID", who)
        if kind in ("reaction", "edit", "delete") and (self.reply_to or self.mentions):
            raise _field_error("replyTo" if self.reply_to else "mentions",
                               f"a {kind} quotes and mentions nothing")
        return self

    @staticmethod
    def _check_media(kind: str, media: Media, upload: bool) -> None:
        if upload == (media.url is not None):
            raise _field_error(f"{kind}.url", "give the file either as `url` or as the "
                               "multipart request's `file` part, not both" if upload else
                               "required (or upload the file in a multipart request)")
        if media.caption is not None and kind not in ("image", "video", "document"):
            raise _field_error(f"{kind}.caption", f"a {kind} has no caption")
        if media.view_once and kind not in ("image", "video"):
            raise _field_error(f"{kind}.viewOnce", f"a {kind} cannot be view-once")
        if media.file_name is not None and kind != "document":
            raise _field_error(f"{kind}.fileName", "only a document has a file name")

    @property
    def kind(self) -> SendKind:
        kind: SendKind = next(k for k in get_args(SendKind) if getattr(self, k) is not None)
        return kind

    def jid_parts(self) -> tuple[str, str]:
        """(user, server) of the recipient's JID: a phone number is a user on
        s.whatsapp.net."""
        return jid_parts(self.to)

    @property
    def chat(self) -> str:
        """The recipient as a JID string: the key of its per-chat rate limit, the same key the
        pipeline uses for replies to that chat."""
        user, server = self.jid_parts()
        return f"{user}@{server}"

    def fingerprint(self, upload_sha256: str = "") -> str:
        """What a retried request must repeat to be the same request (idempotency): the
        message and, for an upload, the file's bytes (their SHA-256)."""
        canonical = self.model_dump_json(by_alias=True) + upload_sha256
        return hashlib.sha256(canonical.encode()).hexdigest()


def jid_parts(recipient: str) -> tuple[str, str]:
    """(user, server) of a recipient given as a JID or as phone digits."""
    if "@" in recipient:
        user, server = recipient.split("@", 1)
        return user, server
    return recipient.lstrip("+"), "s.whatsapp.net"


def chat_jid(recipient: str) -> str:
    user, server = jid_parts(recipient)
    return f"{user}@{server}"


PresenceState = Literal["typing", "recording", "paused"]


class PresenceRequest(_Model):
    """POST /v1/bots/{namespace}/{bot}/chats/{chat}/presence"""

    state: PresenceState = Field(description=(
        "typing or recording: the chat shows it (until paused, or a few seconds pass)"))


class ReadRequest(_Model):
    """POST /v1/bots/{namespace}/{bot}/chats/{chat}/read: blue ticks for these messages."""

    message_ids: list[str] = Field(min_length=1, max_length=100)
    sender: str | None = Field(default=None, pattern=RECIPIENT_PATTERN, max_length=64,
                               description=(
                                   "Groups: who wrote the messages, when the bot has not seen "
                                   "them (default: the sender the bot saw)"))

    @model_validator(mode="after")
    def _ids(self) -> ReadRequest:
        for i, mid in enumerate(self.message_ids):
            if not re.match(MESSAGE_ID_PATTERN, mid):
                raise _field_error(f"messageIds.{i}", "not a message id", mid)
        return self


class ChatActionResponse(_Model):
    status: Literal["done"] = "done"
    chat: str
    bot: str
    server_name: str


class SendMessageResponse(_Model):
    status: Literal["sent"] = "sent"
    type: SendKind = Field(default="text", description="The kind of message sent")
    message_id: str = Field(description="WhatsApp's id of the sent message")
    to: str = Field(description="The recipient's JID")
    bot: str
    server_name: str
    sent_at: datetime


class ErrorResponse(_Model):
    """Every error answer of the gateway and the worker."""

    error: str = Field(description="A stable, machine-readable code")
    message: str = Field(description="What went wrong, for humans")
    field: str | None = Field(default=None, description="The offending field (422)")
    retry_after_seconds: int | None = Field(default=None, description="When to retry (429)")
    phase: str | None = Field(default=None, description="The bot's phase (503)")


def valid_idempotency_key(value: str) -> bool:
    return bool(_IDEMPOTENCY_RE.match(value))
