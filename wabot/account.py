"""What a tenant can do with the WhatsApp account behind a bot, beyond sending messages: the
session (log out, restart, re-pair), groups, contacts and presence, as typed models of the
requests and answers of the worker's `/v1/session`, `/v1/groups`, `/v1/contacts` and
`/v1/presence` routes (the gateway forwards `/v1/bots/{namespace}/{bot}/...` to them).

pydantic only, no I/O: the worker validates with these, tests and Python clients import them.
Limits are part of the contract: a participant list longer than WhatsApp's group size, or a
look-up of more numbers than one request may carry, is refused before anything is sent.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from .account_core import GROUP_PATTERN as GROUP_PATTERN
from .account_core import USER_PATTERN as USER_PATTERN
from .account_core import AccountError as AccountError
from .account_core import group_user as group_user
from .account_core import user_parts as user_parts
from .api import _Model
from .status import AccountStatus, ActivityStatus, PairingStatus, SessionActionStatus

# WhatsApp's largest group is 1024 members; one request never names more.
MAX_PARTICIPANTS = 1024
# How many numbers one "is on WhatsApp" look-up carries (whatsmeow sends them in one query).
MAX_LOOKUP = 50
MAX_SUBJECT = 100
MAX_DESCRIPTION = 2048
# An invite link "https://chat.whatsapp.com/<code>" or the bare code.
INVITE_PATTERN = r"^(https://chat\.whatsapp\.com/)?[A-Za-z0-9]{10,32}$"

# One person, one phone number: as list items, so the OpenAPI document says what is valid.
User = Annotated[str, Field(pattern=USER_PATTERN, max_length=64)]
Phone = Annotated[str, Field(pattern=r"^\+?[1-9][0-9]{6,14}$", max_length=16)]








# --- session ------------------------------------------------------------------------------------


class PairingRequest(_Model):
    """POST /v1/session/pairing: a fresh QR code, or a code to type on the phone."""

    method: Literal["qr", "code"] = "qr"
    phone_number: str | None = Field(default=None, pattern=r"^\+?[1-9][0-9]{6,14}$",
                                     description="With method code: the bot's own number.")

    @field_validator("phone_number")
    @classmethod
    def _digits(cls, v: str | None) -> str | None:
        return v.lstrip("+") if v else v


class SessionView(_Model):
    """GET /v1/session: where the bot's WhatsApp session stands."""

    state: str
    account: AccountStatus | None = None
    pairing: PairingStatus | None = None
    last_error: str | None = None
    session_action: SessionActionStatus | None = None
    # Messages in/out over the worker's last hour and its webhook's delivery state (the same
    # as status.worker.activity; the fleet tiers' console reads it here).
    activity: ActivityStatus | None = None


class SessionActionResponse(_Model):
    """The answer to POST /v1/session/{logout,restart,pairing} (202: accepted and acted on;
    the session's new state follows in GET /v1/session, status and `session.status`)."""

    request_id: str
    action: Literal["logout", "restart", "pairing"]
    result: str
    message: str | None = None
    replayed: bool = False


# --- groups -------------------------------------------------------------------------------------


class Participant(_Model):
    jid: str
    phone: str | None = None
    lid: str | None = None
    is_admin: bool = False
    is_super_admin: bool = False


class GroupView(_Model):
    """A group as the bot sees it."""

    jid: str
    name: str
    topic: str | None = None
    owner: str | None = None
    created_at: datetime | None = None
    announce: bool = False
    locked: bool = False
    ephemeral_seconds: int | None = None
    size: int = 0
    participants: list[Participant] = Field(default_factory=list)


class GroupList(_Model):
    groups: list[GroupView]


class CreateGroupRequest(_Model):
    name: str = Field(min_length=1, max_length=MAX_SUBJECT)
    participants: list[User] = Field(default_factory=list, max_length=MAX_PARTICIPANTS)

    @field_validator("participants")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        return _valid_users(v)


class GroupNameRequest(_Model):
    name: str = Field(min_length=1, max_length=MAX_SUBJECT)


class GroupDescriptionRequest(_Model):
    description: str = Field(max_length=MAX_DESCRIPTION)


class GroupSettingsRequest(_Model):
    """Only admins may send (announce) / only admins may edit the group's info (locked); at
    least one of them."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    announce: bool | SkipJsonSchema[None] = None
    locked: bool | SkipJsonSchema[None] = None


class ParticipantsRequest(_Model):
    action: Literal["add", "remove", "promote", "demote"]
    participants: list[User] = Field(min_length=1, max_length=MAX_PARTICIPANTS)

    @field_validator("participants")
    @classmethod
    def _users(cls, v: list[str]) -> list[str]:
        return _valid_users(v)


class ParticipantResult(_Model):
    jid: str
    status: Literal["ok", "failed"]
    error: int | None = Field(default=None, description="WhatsApp's code for this participant "
                              "(403: privacy settings, 409: already in, 404: not in)")


class ParticipantsResponse(_Model):
    group: str
    action: str
    participants: list[ParticipantResult]


class InviteLinkResponse(_Model):
    group: str
    link: str


class JoinGroupRequest(_Model):
    link: str = Field(pattern=INVITE_PATTERN, description="The invite link or its code.")

    def code(self) -> str:
        return self.link.rsplit("/", 1)[-1]


class JoinGroupResponse(_Model):
    group: str


# --- contacts and presence ----------------------------------------------------------------------


class OnWhatsAppRequest(_Model):
    numbers: list[Phone] = Field(min_length=1, max_length=MAX_LOOKUP)

    @field_validator("numbers")
    @classmethod
    def _phones(cls, v: list[str]) -> list[str]:
        out = []
        for n in v:
            m = re.fullmatch(r"\+?([1-9][0-9]{6,14})", n)
            if m is None:
                raise ValueError(f"not a phone number (E.164 digits): {n[:40]!r}")
            out.append(m.group(1))
        return out


class OnWhatsAppResult(_Model):
    number: str
    on_whatsapp: bool
    jid: str | None = None


class OnWhatsAppResponse(_Model):
    results: list[OnWhatsAppResult]


class ContactView(_Model):
    jid: str
    status: str | None = None
    picture_id: str | None = None
    verified_name: str | None = None
    devices: int = 0


class ProfilePictureView(_Model):
    jid: str
    url: str | None = None
    id: str | None = None
    type: str | None = None


class JidMapping(_Model):
    """The same person as a phone-number JID and as a LID."""

    phone: str | None = None
    lid: str | None = None


class OwnPresenceRequest(_Model):
    """POST /v1/presence: the bot's own presence (typing in a chat: POST
    /v1/chats/{chat}/presence)."""

    presence: Literal["available", "unavailable"]


class SubscribePresenceRequest(_Model):
    jid: str = Field(pattern=USER_PATTERN, max_length=64)


def _valid_users(values: list[str]) -> list[str]:
    """Each valid, each person once (a number and its JID are the same person)."""
    pattern = re.compile(USER_PATTERN)
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for v in values:
        if not pattern.fullmatch(v):
            raise ValueError(f"not a phone number or user JID: {v[:40]!r}")
        if user_parts(v) not in seen:
            seen.add(user_parts(v))
            out.append(v)
    return out
