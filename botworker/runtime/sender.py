"""Every outgoing message passes here: the fencing gate, the rate limits, then the transport.

`Transport` is the one seam between the worker and the network: production sends through the
real neonize client (`build_reply_message` + `send_message`, what `reply_message` does, when it
quotes the command; `send_message` alone otherwise); tests subclass neonize's own `NewClient`
and record at `send_message`, so everything above it (message building, quoting, JID handling)
is neonize's real code.

A reply that cannot quote its command is still sent, unquoted: protobuf hands a message ID that
is not valid UTF-8 over as bytes, and neonize's quote builder then fails decoding it (765 of
100,000 hostile messages in the reliability run went unanswered that way). The quote is
decoration; the answer is what the user asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..core.ratelimit import RateLimiter
from ..logs import get_logger
from ..metrics import Metrics

log = get_logger("sender")

# WhatsApp's own limit on a text message is 65536 characters.
MAX_TEXT = 65536

SendResult = Literal["sent", "rate_limited", "not_connected", "failed"]


@dataclass(frozen=True)
class SendOutcome:
    result: SendResult
    message_id: str | None = None
    retry_after_s: float = 0.0  # with "rate_limited": when one more message would be allowed


class QuoteUnusable(Exception):
    """`quoted` cannot be quoted (its reply could not be built); nothing was sent, so the
    same text may go out unquoted without risking a double send."""


class Transport(Protocol):
    """Everything the worker sends to WhatsApp: texts, read receipts, call rejections."""

    def send_text(self, chat: Any, text: str, quoted: Any | None) -> str | None:
        """Send `text` to `chat` (a neonize JID), quoting `quoted` (a MessageEv) if given;
        return WhatsApp's message id (when known); raise on failure, QuoteUnusable when the
        quote cannot be built (before anything was sent)."""

    def mark_read(self, message: Any) -> None:
        """Send a read receipt for `message` (a MessageEv); raise on failure."""

    def reject_call(self, offer: Any) -> None:
        """Decline the call of `offer` (a CallOfferEv); raise on failure."""


class NeonizeTransport:
    """Sends through a real neonize client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send_text(self, chat: Any, text: str, quoted: Any | None) -> str | None:
        if quoted is None:
            resp = self._client.send_message(chat, text)
        else:
            # reply_message in two steps, so a failure to build the quote (pure protobuf work,
            # no network yet) is told apart from a failed send.
            try:
                message = self._client.build_reply_message(text, quoted)
            except Exception as exc:
                raise QuoteUnusable(type(exc).__name__) from exc
            resp = self._client.send_message(chat, message)
        message_id = getattr(resp, "ID", None)
        return str(message_id) if message_id else None

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
        # The last message whose quote could not be built: further replies to it (a handler
        # may answer twice) go out unquoted at once and are not logged again.
        self._unquotable: tuple[Any, str] | None = None

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

    def can_send(self) -> bool:
        return self._can_send()

    def send(self, chat_key: str, chat: Any, text: str, quoted: Any | None = None) -> SendResult:
        """Send one text unless fenced or over a limit; never raises."""
        return self.send_text(chat_key, chat, text, quoted).result

    def send_text(self, chat_key: str, chat: Any, text: str,
                  quoted: Any | None = None) -> SendOutcome:
        """`send`, with the message id and, when rate-limited, when to try again."""
        if not self._can_send():
            # Without the Lease (or the connection) this pod must not speak for the bot.
            self._metrics.dropped("not_connected")
            return SendOutcome("not_connected")
        now = self._clock()
        hit = self.limiter.try_acquire(chat_key, now)
        if hit is not None:
            self._metrics.dropped("rate_limited")
            log.info("message dropped by rate limit", extra={"limit": hit})
            return SendOutcome("rate_limited",
                               retry_after_s=self.limiter.retry_after(chat_key, now))
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "\u2026"
        try:
            message_id = self._send_quoting(chat, text, quoted)
        except Exception as exc:
            self._metrics.dropped("send_failed")
            log.warning("send failed", extra={"error": str(exc)[:300]})
            return SendOutcome("failed")
        self._metrics.sent()
        return SendOutcome("sent", message_id=message_id)

    def _send_quoting(self, chat: Any, text: str, quoted: Any | None) -> str | None:
        """The transport's send; when the quote cannot be built, the same text unquoted.

        Counted per reply sent that way; logged once per message, with the bot and tenant and
        the kind of failure, never the message's text or ID (the ID is the broken field, and
        either may be anything a stranger typed)."""
        if quoted is None:
            return self._transport.send_text(chat, text, None)
        known = self._unquotable
        if known is not None and known[0] is quoted:
            reason = known[1]
        else:
            try:
                return self._transport.send_text(chat, text, quoted)
            except QuoteUnusable as exc:
                reason = "invalid_utf8" if isinstance(exc.__cause__, UnicodeError) else "error"
                self._unquotable = (quoted, reason)
                log.warning("replying without quoting the command: the quote could not be "
                            "built", extra={**self._metrics.identity, "reason": reason,
                                            "error_type": str(exc)})
        message_id = self._transport.send_text(chat, text, None)
        self._metrics.reply_unquoted(reason)
        return message_id
