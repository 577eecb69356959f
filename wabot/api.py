"""The external shapes of the integrations, as typed models shared by every side of them:

- the send-message API (`gateway/openapi.yaml`): what a client posts to the gateway, what the
  gateway forwards to the bot's worker unchanged, and every answer either of them gives;
- the webhook deliveries the worker posts to a tenant's receiver (README, "Receiving
  webhooks").

Kept in `wabot` (pydantic only, no I/O) so the gateway, the worker and tests agree on one
definition, and a receiver written in Python can import the payload models.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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


class SendMessageRequest(_Model):
    """POST /v1/bots/{namespace}/{bot}/messages (gateway) and POST /v1/messages (worker)."""

    to: str = Field(pattern=RECIPIENT_PATTERN, max_length=64,
                    description="E.164 digits (with or without '+') or a JID")
    text: str = Field(min_length=1, max_length=MAX_TEXT)

    def jid_parts(self) -> tuple[str, str]:
        """(user, server) of the recipient's JID: a phone number is a user on
        s.whatsapp.net."""
        if "@" in self.to:
            user, server = self.to.split("@", 1)
            return user, server
        return self.to.lstrip("+"), "s.whatsapp.net"

    @property
    def chat(self) -> str:
        """The recipient as a JID string: the key of its per-chat rate limit, the same key the
        pipeline uses for replies to that chat."""
        user, server = self.jid_parts()
        return f"{user}@{server}"

    def fingerprint(self) -> str:
        """What a retried request must repeat to be the same request (idempotency)."""
        canonical = self.model_dump_json(by_alias=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


class SendMessageResponse(_Model):
    status: Literal["sent"] = "sent"
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


# --- webhooks -----------------------------------------------------------------------------------

WebhookEventType = Literal["message", "command", "connection", "pairing"]
SIGNATURE_PREFIX = "sha256="


class MessageData(_Model):
    """`message`: an incoming message that passed the bot's filters."""

    chat: str
    sender: str
    push_name: str
    message_id: str
    text: str
    is_group: bool
    timestamp: datetime | None = None


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


EventData = Annotated[MessageData | CommandData | ConnectionData | PairingData,
                      Field(union_mode="left_to_right")]


class WebhookPayload(_Model):
    """The JSON body of every delivery. `id` is also the X-Wabot-Delivery header: the same
    across retries of one event, so a receiver dedupes by it (delivery is at least once)."""

    id: str
    event: WebhookEventType
    bot: str
    server_name: str
    created_at: datetime
    data: EventData


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """X-Wabot-Signature: HMAC-SHA256 over "{timestamp}.{body}", hex, prefixed "sha256="."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float,
           tolerance_s: float = 300.0) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (replays of
    an old delivery are refused)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
