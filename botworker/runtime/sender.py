"""Every outgoing message passes here: the fencing gate, the rate limits, then the transport.

`Transport` is the one seam between the worker and the network: production sends through the
real neonize client (a reply quoting its command is built by runtime/reply.py, byte for byte
what neonize's `build_reply_message` builds, then `send_message`; `send_message` alone
otherwise); tests subclass neonize's own `NewClient` and record at `send_message`, so
everything above it (message building, quoting, JID handling) is the worker's real code.

A reply that cannot quote its command is still sent, unquoted: protobuf hands a message ID that
is not valid UTF-8 over as bytes, and neonize's quote builder then fails decoding it (765 of
100,000 hostile messages in the reliability run went unanswered that way). The quote is
decoration; the answer is what the user asked for.

Every other kind (media, location, contact, poll, reaction, edit, delete: an `Outgoing`) takes
the same gate and limits, then `Transport.send_outgoing`, which builds the message with
neonize's own builders (runtime/outgoing.py) and sends it with `send_message`; read receipts
and typing/recording presence for a chat are `chat_action`s, fenced and rate-limited like a
message. Each is counted by type and result (wabot_sends_total). Sent messages and, through
`remember_incoming`, received ones go into `recent` (core/recent.py), so a later reply,
reaction, edit or delete can name them by id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, Literal, NamedTuple, Protocol

from ..core.filters import Inbound
from ..core.outgoing import InvalidContent, Outgoing
from ..core.ratelimit import RateLimiter
from ..core.recent import Known, RecentMessages
from ..logs import get_logger
from ..metrics import Metrics
from .media_source import MediaBusy, MediaSource
from .reply import build_reply

log = get_logger("sender")

# WhatsApp's own limit on a text message is 65536 characters.
MAX_TEXT = 65536

SendResult = Literal["sent", "rate_limited", "not_connected", "failed", "invalid", "busy"]


class SendOutcome(NamedTuple):
    """What became of one send. A tuple (immutable like the frozen dataclass it was): every
    reply makes one, in 0.56 us instead of 1.28."""

    result: SendResult
    message_id: str | None = None
    retry_after_s: float = 0.0  # with "rate_limited": when one more message would be allowed
    field: str | None = None  # with "invalid": the offending field, and why
    detail: str = ""


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

    def send_outgoing(self, chat: str, out: Outgoing) -> str | None:
        """Build `out` (uploading its file) and send it to `chat` (a JID string); return
        WhatsApp's message id; InvalidContent when it cannot be built from what was given."""

    def read_messages(self, chat: str, sender: str, message_ids: list[str]) -> None:
        """Read receipts for `message_ids`, all written by `sender` in `chat`."""

    def chat_presence(self, chat: str, state: str) -> None:
        """typing / recording / paused in `chat`."""


class NeonizeTransport:
    """Sends through a real neonize client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send_text(self, chat: Any, text: str, quoted: Any | None) -> str | None:
        if quoted is None:
            resp = self._client.send_message(chat, text)
        else:
            # reply_message in two steps, so a failure to build the quote (pure protobuf work,
            # no network yet) is told apart from a failed send. reply.py builds what neonize's
            # build_reply_message does, without clearing the received message's quote.
            try:
                message = build_reply(self._client, text, quoted)
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

    def send_outgoing(self, chat: str, out: Outgoing) -> str | None:
        from .outgoing import build, jid

        resp = self._client.send_message(jid(chat), build(self._client, out, chat))
        message_id = getattr(resp, "ID", None)
        return str(message_id) if message_id else None

    def read_messages(self, chat: str, sender: str, message_ids: list[str]) -> None:
        from neonize.utils.enum import ReceiptType

        from .outgoing import jid

        self._client.mark_read(*message_ids, chat=jid(chat), sender=jid(sender),
                               receipt=ReceiptType.READ)

    def chat_presence(self, chat: str, state: str) -> None:
        from neonize.utils.enum import ChatPresence, ChatPresenceMedia

        from .outgoing import jid

        presence = (ChatPresence.CHAT_PRESENCE_PAUSED if state == "paused"
                    else ChatPresence.CHAT_PRESENCE_COMPOSING)
        media = (ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if state == "recording"
                 else ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT)
        self._client.send_chat_presence(jid(chat), presence, media)


class Sender:
    def __init__(
        self,
        transport: Transport,
        limiter: RateLimiter,
        metrics: Metrics,
        can_send: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        *,
        media: MediaSource | None = None,
        recent: RecentMessages | None = None,
        on_sent: Callable[[str, Outgoing, str], None] | None = None,
    ) -> None:
        # (chat, what, WhatsApp's message id) of every non-text message sent: the pipeline
        # remembers its own polls' options by it, so votes on them name what was chosen.
        self._on_sent = on_sent
        self.media = media or MediaSource()
        self.recent = recent or RecentMessages()
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
        return self._fenced(lambda: self._transport.mark_read(message), "read receipt failed")

    def reject_call(self, offer: Any) -> bool:
        """Decline an incoming call (settings.rejectCalls); fenced like any send."""
        if not self._fenced(lambda: self._transport.reject_call(offer), "call rejection failed"):
            return False
        log.info("incoming call rejected")
        return True

    def _fenced(self, act: Callable[[], object], failure: str) -> bool:
        """`act` only while this pod may send; False when it may not, or when `act` raised
        (logged as `failure`: a receipt or a rejection is not worth more than a line)."""
        if not self._can_send():
            return False
        try:
            act()
        except Exception as exc:
            log.info(failure, extra={"error": str(exc)[:300]})
            return False
        return True

    def would_allow(self, chat_key: str) -> bool:
        return self.limiter.would_allow(chat_key, self._clock())

    def can_send(self) -> bool:
        return self._can_send()

    def send(self, chat_key: str, chat: Any, text: str | Outgoing,
             quoted: Any | None = None) -> SendResult:
        """Send one text (or any other kind: a plugin's `ctx.reply_image(...)` comes this
        way) unless fenced or over a limit; never raises."""
        if isinstance(text, Outgoing):
            out = text
            if quoted is not None and out.quote is None and out.kind not in _NO_QUOTE:
                out = replace(out, quote=known_of(quoted))
            return self.send_outgoing(chat_key, out).result
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
        self._metrics.send_result("text", "sent")
        if message_id:
            self.recent.remember(Known(chat_key, message_id, "", True, text))
        return SendOutcome("sent", message_id=message_id)

    def send_outgoing(self, chat_key: str, out: Outgoing) -> SendOutcome:
        """Any kind of message to `chat_key` (a JID string): fenced, rate-limited, its file
        fetched and checked (media_source.py), built and sent; never raises."""
        outcome = self._send_outgoing(chat_key, out)
        self._metrics.send_result(out.kind, outcome.result)
        if outcome.result == "invalid":  # a plugin's or the spec's file: its author must see
            log.warning("message not sent: WhatsApp would refuse it",
                        extra={"kind": out.kind, "field": outcome.field,
                               "error": outcome.detail[:300]})
        if outcome.result == "sent":
            self._metrics.sent()
            if outcome.message_id and out.kind not in _NO_QUOTE:
                media = out.media
                text = out.content if isinstance(out.content, str) else (
                    media.caption or "" if media is not None else "")
                self.recent.remember(Known(chat_key, outcome.message_id, "", True, text,
                                           out.kind))
            if outcome.message_id and self._on_sent is not None:
                try:
                    self._on_sent(chat_key, out, outcome.message_id)
                except Exception:  # bookkeeping: the message is out either way
                    log.exception("after-send hook failed", extra={"kind": out.kind})
        elif outcome.result in ("rate_limited", "not_connected"):
            self._metrics.dropped(outcome.result)
        elif outcome.result == "failed":
            self._metrics.dropped("send_failed")
        return outcome

    def _send_outgoing(self, chat_key: str, out: Outgoing) -> SendOutcome:
        if not self._can_send():
            return SendOutcome("not_connected")
        if not self.would_allow(chat_key):
            return SendOutcome("rate_limited", retry_after_s=self.limiter.retry_after(
                chat_key, self._clock()))
        try:
            slot: AbstractContextManager[None] = (self.media.slot(out) if out.media is not None
                                                  else nullcontext())
            with slot:
                out = self.media.prepare(out)
                hit = self.limiter.try_acquire(chat_key, self._clock())
                if hit is not None:
                    return SendOutcome("rate_limited", retry_after_s=self.limiter.retry_after(
                        chat_key, self._clock()))
                message_id = self._transport.send_outgoing(chat_key, out)
        except InvalidContent as exc:
            return SendOutcome("invalid", field=exc.field, detail=str(exc))
        except MediaBusy as exc:
            return SendOutcome("busy", detail=str(exc))
        except Exception as exc:
            log.warning("send failed", extra={"kind": out.kind, "error_type": type(exc).__name__,
                                              "error": str(exc)[:300]})
            return SendOutcome("failed", detail=type(exc).__name__)
        return SendOutcome("sent", message_id=message_id)

    def chat_action(self, chat_key: str, action: str,
                    run: Callable[[Transport], None]) -> SendOutcome:
        """A read receipt or a presence update for a chat (`action` names it in the
        metrics): fenced and rate-limited like a message; never raises."""
        if not self._can_send():
            outcome = SendOutcome("not_connected")
        else:
            now = self._clock()
            if self.limiter.try_acquire(chat_key, now) is not None:
                outcome = SendOutcome("rate_limited",
                                      retry_after_s=self.limiter.retry_after(chat_key, now))
            else:
                try:
                    run(self._transport)
                    outcome = SendOutcome("sent")
                except Exception as exc:
                    log.info("chat action failed", extra={"action": action,
                                                          "error": str(exc)[:300]})
                    outcome = SendOutcome("failed")
        self._metrics.send_result(action, outcome.result)
        return outcome

    def remember(self, msg: Inbound, message: Any = None, *, text: str | None = None) -> None:
        """A received message (the pipeline's, already read: no protobuf is parsed twice), so
        replies, reactions, edits and deletes can name it by id. A quote of it shows `text`
        (the classification's text or caption); without it, the text of `message` (its waE2E
        Message), read from the two text fields only: a message the filters dropped is not
        classified."""
        if text is None:
            found = "" if message is None else (
                message.conversation or message.extendedTextMessage.text)
            text = found if isinstance(found, str) else ""
        self.recent.remember(Known(msg.chat, msg.message_id, msg.sender, msg.is_from_me,
                                   text))

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


# Kinds that act on an earlier message instead of quoting one.
_NO_QUOTE = ("reaction", "edit", "delete")


def known_of(ev: Any) -> Known:
    """What a later send needs of a received message (a neonize MessageEv)."""
    from neonize.utils import extract_text
    from neonize.utils.jid import Jid2String

    src = ev.Info.MessageSource
    text = extract_text(ev.Message)
    return Known(_str(Jid2String(src.Chat)), _str(ev.Info.ID), _str(Jid2String(src.Sender)),
                 bool(src.IsFromMe), _str(text) if text else "")


def _str(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
