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
from typing import Literal

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
