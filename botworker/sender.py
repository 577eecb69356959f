"""Every outgoing message passes here: the fencing gate, the rate limits, then the transport.

`Transport` is the one seam between the worker and the network: production sends through the
real neonize client (`reply_message`, which quotes the command, or `send_message`); tests
subclass neonize's own `NewClient` and record at `send_message`, so everything above it
(message building, quoting, JID handling) is neonize's real code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from .logs import get_logger
from .metrics import Metrics
from .ratelimit import RateLimiter

log = get_logger("sender")

# WhatsApp's own limit on a text message is 65536 characters.
MAX_TEXT = 65536

SendResult = Literal["sent", "rate_limited", "not_connected", "failed"]


class Transport(Protocol):
    """Everything the worker sends to WhatsApp: texts, read receipts, call rejections."""

    def send_text(self, chat: Any, text: str, quoted: Any | None) -> None:
        """Send `text` to `chat` (a neonize JID), quoting `quoted` (a MessageEv) if given;
        raise on failure."""

    def mark_read(self, message: Any) -> None:
        """Send a read receipt for `message` (a MessageEv); raise on failure."""

    def reject_call(self, offer: Any) -> None:
        """Decline the call of `offer` (a CallOfferEv); raise on failure."""


class NeonizeTransport:
    """Sends through a real neonize client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send_text(self, chat: Any, text: str, quoted: Any | None) -> None:
        if quoted is not None:
            self._client.reply_message(text, quoted)
        else:
            self._client.send_message(chat, text)

    def mark_read(self, message: Any) -> None:
        from neonize.utils.enum import ReceiptType

        src = message.Info.MessageSource
        self._client.mark_read(
            message.Info.ID, chat=src.Chat, sender=src.Sender, receipt=ReceiptType.READ
        )

    def reject_call(self, offer: Any) -> None:
        meta = offer.basicCallMeta
        self._client.reject_call(meta.callCreator, meta.callID)


class Sender:
    def __init__(
        self,
        transport: Transport,
        limiter: RateLimiter,
        metrics: Metrics,
        can_send: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self.limiter = limiter
        self._metrics = metrics
        self._can_send = can_send
        self._clock = clock

    def mark_read(self, message: Any) -> bool:
        """Blue ticks (settings.autoRead); not rate-limited, but fenced like any send."""
        if not self._can_send():
            return False
        try:
            self._transport.mark_read(message)
        except Exception as exc:
            log.info("read receipt failed", extra={"error": str(exc)[:300]})
            return False
        return True

    def reject_call(self, offer: Any) -> bool:
        """Decline an incoming call (settings.rejectCalls); fenced like any send."""
        if not self._can_send():
            return False
        try:
            self._transport.reject_call(offer)
        except Exception as exc:
            log.info("call rejection failed", extra={"error": str(exc)[:300]})
            return False
        log.info("incoming call rejected")
        return True

    def would_allow(self, chat_key: str) -> bool:
        return self.limiter.would_allow(chat_key, self._clock())

    def send(self, chat_key: str, chat: Any, text: str, quoted: Any | None = None) -> SendResult:
        """Send one text unless fenced or over a limit; never raises."""
        if not self._can_send():
            # Without the Lease (or the connection) this pod must not speak for the bot.
            self._metrics.dropped("not_connected")
            return "not_connected"
        hit = self.limiter.try_acquire(chat_key, self._clock())
        if hit is not None:
            self._metrics.dropped("rate_limited")
            log.info("reply dropped by rate limit", extra={"limit": hit})
            return "rate_limited"
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "\u2026"
        try:
            self._transport.send_text(chat, text, quoted)
        except Exception as exc:
            self._metrics.dropped("send_failed")
            log.warning("send failed", extra={"error": str(exc)[:300]})
            return "failed"
        self._metrics.sent()
        return "sent"
