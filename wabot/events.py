"""The webhook deliveries a bot's worker posts to a tenant's receiver (README, "Receiving
webhooks"), as typed models: the worker builds them, tests and Python receivers import them.

Kept apart from the send API (`wabot.api`): these are what the bot tells the tenant, those what
the tenant asks of the bot. pydantic only, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .api import _Model

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
