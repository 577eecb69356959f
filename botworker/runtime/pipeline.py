"""The message pipeline: neonize's callback thread enqueues, one consumer thread does the rest.

neonize delivers every event through one Go channel with a buffer of 100, one at a time: a
handler that waits on the database or the network stalls all of whatsmeow, keep-alives
included. So the callback only puts the event on a bounded queue (a full queue drops and
counts), and a consumer thread runs: filters -> parser -> this bot's registry -> handler with
a CommandContext -> rate-limited sender -> audit row and metrics.

A handler can fail in any way; the failure is logged with bot and tenant, counted, answered
politely, and the next message is processed as if nothing happened.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wabot.spec_view import WhatsAppBotSpec

from ..adapters.audit_writer import AuditRecord, AuditWriter
from ..adapters.state_file import GreetedChats
from ..core import inbound, parser
from ..core.context import (
    DB_UNAVAILABLE_TEXT,
    FAILED_TEXT,
    CommandContext,
    DatabaseUnavailable,
    SessionFactory,
    _no_database,
)
from ..core.filters import Inbound, SeenIds, drop_reason
from ..core.registry import Command, CommandRegistry
from ..logs import get_logger
from ..metrics import Metrics
from .incoming import EventSink, InboundEvents
from .sender import Sender

log = get_logger("pipeline")

__all__ = ["EventSink", "Pipeline", "Runtime", "extract"]


@dataclass(frozen=True)
class Runtime:
    """What a spec change replaces, as one object: a message is handled entirely with the
    spec and registry that were current when it was dequeued."""

    spec: WhatsAppBotSpec
    registry: CommandRegistry
    version: str = ""


@dataclass(frozen=True)
class _Call:
    offer: Any


@functools.cache
def _jid2string() -> Callable[[Any], str]:
    """neonize's Jid2String, imported at the first message (not at this module's import) and
    kept: an import statement in extract() cost ~0.8 us a message (a lookup in sys.modules
    and the import machinery's fromlist handling, every call)."""
    from neonize.utils.jid import Jid2String

    return Jid2String  # type: ignore[no-any-return]


def extract(ev: Any) -> Inbound:
    """The fields the filters use, from a neonize MessageEv (the text comes with its kind:
    core/inbound.py)."""
    Jid2String = _jid2string()
    src = ev.Info.MessageSource
    return Inbound(
        message_id=_s(ev.Info.ID),
        chat=_s(Jid2String(src.Chat)),
        chat_server=_s(src.Chat.Server),
        sender=_s(Jid2String(src.Sender)),
        is_from_me=bool(src.IsFromMe),
        is_group=bool(src.IsGroup),
        push_name=_s(ev.Info.Pushname),
        timestamp_ms=int(ev.Info.Timestamp),
    )


def _s(value: str | bytes) -> str:
    """protobuf hands proto2 strings with invalid UTF-8 over as bytes."""
    return parser.to_text(value)


class Pipeline:
    def __init__(
        self,
        *,
        bot_id: str,
        server_name: str,
        runtime: Callable[[], Runtime],
        sender: Sender,
        metrics: Metrics,
        audit: AuditWriter | None = None,
        db: SessionFactory = _no_database,
        own_user: Callable[[], str | None] = lambda: None,
        maxsize: int = 1000,
        dedupe: int = 4096,
        events: EventSink | None = None,
        greeted: Callable[[], GreetedChats] | None = None,
        kinds: InboundEvents | None = None,
    ) -> None:
        self.bot_id = bot_id
        self.server_name = server_name
        self._runtime = runtime
        self._sender = sender
        self._metrics = metrics
        self._audit = audit
        self._db = db
        self._own_user = own_user
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        metrics.watch_queue(self._queue.qsize)  # read when scraped, not set per message
        self._seen = SeenIds(dedupe)
        self._accepting = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._events = events
        self._greeted = greeted
        self.kinds = kinds or InboundEvents(metrics=metrics, events=events)
        self.account: Any = None  # the account's operations for ctx.account (worker.py)

    # --- neonize's callback thread ------------------------------------------------------------

    def offer_call(self, ev: Any) -> bool:
        """A CallOfferEv, from neonize's callback thread: declining it is network I/O, so it
        goes through the queue like a message."""
        try:
            self._queue.put_nowait(_Call(ev))
            return True
        except queue.Full:
            self._metrics.dropped("queue_full")
            return False

    def offer(self, ev: Any) -> bool:
        """Called on neonize's callback thread: enqueue and return at once, never raise."""
        try:
            self._metrics.received()
            if not self._accepting:
                self._metrics.dropped("shutting_down")
                return False
            self._queue.put_nowait(ev)
            return True
        except queue.Full:
            self._metrics.dropped("queue_full")
            return False
        except Exception:  # never let anything escape into ctypes
            log.exception("could not enqueue a message")
            return False

    # --- the consumer thread --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def idle(self) -> bool:
        return self._queue.empty() and not self._busy

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._busy = True
            try:
                if isinstance(ev, _Call):
                    if self._runtime().spec.settings.reject_calls:
                        self._sender.reject_call(ev.offer)
                    continue
                self.process(ev)
            except Exception:
                log.exception("message processing failed")
            finally:
                self._busy = False

    def stop(self, drain_s: float) -> None:
        """Stop taking messages, give queued ones up to `drain_s` to be answered, then stop."""
        self._accepting = False
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and not self.idle():
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.5, deadline - time.monotonic()))
        left = self._queue.qsize()
        if left:
            log.warning("messages left unanswered at shutdown", extra={"count": left})

    def process(self, ev: Any) -> None:
        """One message: filtered, classified (a reaction, edit, deletion or poll vote is an
        event of its own, never a command), announced, read, welcomed, then answered if it is
        a command (in its text or its caption)."""
        msg = extract(ev)
        rt = self._runtime()
        settings = rt.spec.settings
        reason = drop_reason(msg, ignore_groups=settings.ignore_groups,
                             own_jid_user=self._own_user())
        if reason is None and self._seen.seen_before(f"{msg.chat}/{msg.message_id}"):
            reason = "duplicate"
        # Every message is remembered, ignored ones too: the API's replies, reactions and
        # deletes name it by id. A message's text (or caption) is the classification's.
        if reason is not None:
            self._sender.remember(msg, ev.Message)
            self._metrics.dropped(reason)
            return
        kind = self.kinds.classify(ev, msg)
        if not isinstance(kind, inbound.Incoming):
            self._sender.remember(msg, text="")
            self.kinds.update(kind, ev)
            return
        self._sender.remember(msg, text=kind.text)
        kind = self.kinds.message(kind, rt.spec.media)
        if self._events is not None and self._events.wants("message"):
            self._events.emit("message", kind.data)
        if settings.auto_read:
            self._sender.mark_read(ev)
        chat_jid = ev.Info.MessageSource.Chat
        if settings.welcome_text and not msg.is_group:
            self._welcome(msg.chat, chat_jid, settings.welcome_text)
        parsed = parser.parse(kind.text, rt.spec.commands.prefix, settings.max_message_length)
        if isinstance(parsed, parser.NotACommand):
            return

        def reply(text: str) -> None:
            self._sender.send(msg.chat, chat_jid, text, quoted=ev)

        self._answer(msg, rt, parsed, reply, kind)

    def _answer(self, msg: Inbound, rt: Runtime, parsed: parser.ParsedCommand | parser.TooLong,
                reply: Callable[[str], None], kind: inbound.Incoming | None = None) -> None:
        """A command: refused when too long, unknown or over the chat's rate limit, else run."""
        prefix = rt.spec.commands.prefix
        if isinstance(parsed, parser.TooLong):
            self._metrics.command("too_long", "rejected", None)
            if self._sender.would_allow(msg.chat):
                reply(f"That message is too long (the limit is {parsed.limit} characters).")
            self._command_event(msg, "too_long", [], "rejected", 0)
            return

        cmd = rt.registry.lookup(parsed.name)
        if cmd is None:
            self._metrics.command("unknown", "unknown_command", None)
            if not msg.is_group and self._sender.would_allow(msg.chat):
                hint = f" Send {prefix}help for the list." if "help" in rt.registry else ""
                reply(f"Unknown command {prefix}{parsed.name}.{hint}")
            self._audit_row(msg, parsed.name, "unknown_command", 0)
            self._command_event(msg, parsed.name, list(parsed.args), "unknown_command", 0)
            return

        if not self._sender.would_allow(msg.chat):
            # This chat is over its limit: an answer could not be sent, so skip the work too.
            self._metrics.dropped("rate_limited")
            self._metrics.command(cmd.name, "rate_limited", None)
            self._command_event(msg, cmd.name, list(parsed.args), "rate_limited", 0)
            return
        self._run_command(msg, rt, cmd, parsed, reply, kind)

    def _run_command(self, msg: Inbound, rt: Runtime, cmd: Command,
                     parsed: parser.ParsedCommand, reply: Callable[[str], None],
                     kind: inbound.Incoming | None = None) -> None:
        """The handler, in its own context; any failure becomes a short reply, never silence."""
        adapter = logging.LoggerAdapter(
            log, {"command": cmd.name, "chat": msg.chat, "message_id": msg.message_id}
        )
        ctx = CommandContext(
            bot_id=self.bot_id,
            server_name=self.server_name,
            chat=msg.chat,
            sender=msg.sender,
            push_name=msg.push_name,
            message_id=msg.message_id,
            command=cmd.name,
            args=parsed.args,
            raw_args=parsed.raw_args,
            prefix=rt.spec.commands.prefix,
            settings=rt.spec.settings,
            features=rt.spec.features,
            reply_fn=reply,
            log=adapter,
            db=self._db,
            received_at=(msg.timestamp_ms / 1000.0) if msg.timestamp_ms else time.time(),
            message_fn=(lambda: kind.data) if kind is not None else (lambda: None),
            media_fn=lambda: self.kinds.media_of(kind.data if kind is not None else None),
            account=self.account,
        )
        started = time.perf_counter()
        result = "ok"
        try:
            answer = cmd.handler(ctx)
            if isinstance(answer, str) and answer:
                reply(answer)
        except DatabaseUnavailable:
            result = "db_unavailable"
            adapter.warning("command needs the database, which is unavailable")
            reply(DB_UNAVAILABLE_TEXT)
        except Exception as exc:
            result = "error"
            adapter.error(
                "command handler failed",
                exc_info=True,
                extra={"error_type": type(exc).__name__, "source": cmd.source},
            )
            reply(FAILED_TEXT)
        elapsed = time.perf_counter() - started
        self._metrics.command(cmd.name, result, elapsed)
        self._audit_row(msg, cmd.name, result, int(elapsed * 1000))
        self._command_event(msg, cmd.name, list(parsed.args), result, int(elapsed * 1000))

    def _command_event(self, msg: Inbound, command: str, args: list[str], result: str,
                       latency_ms: int) -> None:
        if self._events is None or not self._events.wants("command"):
            return
        from wabot.event_view import CommandData  # loaded only for a command webhook

        self._events.emit("command", CommandData(
            chat=msg.chat, sender=msg.sender, message_id=msg.message_id, command=command[:64],
            args=args, result=result, latency_ms=latency_ms,
        ))

    def _welcome(self, chat: str, chat_jid: Any, text: str) -> None:
        """settings.welcomeText, once per chat (the first time it writes to the bot), through
        the rate-limited sender. A chat counts as greeted only once the text went out, so a
        welcome held back by a rate limit or a send failure is tried on the chat's next
        message."""
        if self._greeted is None:
            return
        try:
            store = self._greeted()
            if store.greeted(chat):
                return
            if self._sender.send(chat, chat_jid, text) == "sent":
                store.remember(chat)
        except Exception:
            log.exception("welcome text failed")

    def _audit_row(self, msg: Inbound, command: str, result: str, latency_ms: int) -> None:
        if self._audit is None:
            return
        self._audit.record(
            AuditRecord.new(
                self.server_name, self.bot_id, msg.chat, msg.sender, command, result, latency_ms
            )
        )
