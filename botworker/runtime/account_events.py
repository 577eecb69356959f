"""The account's neonize events, handled: receipts (`message.ack`), presence
(`presence.update`), groups (`group.join`, `group.leave`, `group.update`) and calls (`call`),
each a webhook event the tenant selects in spec.webhook.events.

The handlers run on neonize's callback thread: when the bot's spec does not ask for the event
they return at once, else they translate (core/account_events.py) and queue the delivery
(the dispatcher's emit never blocks). A call is the exception: declining it
(settings.rejectCalls) is a network call, so calls go through a small queue of their own, and
the `call` event carries what became of the offer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from wabot.spec_view import SettingsSpec

from ..core import account_events as conv
from ..logs import get_logger
from .account_ops import OpMetrics

log = get_logger("events")

CALL_QUEUE = 100


class AccountEvents:
    def __init__(self, webhooks: Any, *, settings: Callable[[], SettingsSpec],
                 reject_call: Callable[[Any], bool], own_user: Callable[[], str | None],
                 ops: OpMetrics) -> None:
        self._webhooks = webhooks
        self._settings = settings
        self._reject_call = reject_call
        self._own_user = own_user
        self._ops = ops
        self._calls: queue.Queue[Any] = queue.Queue(CALL_QUEUE)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def handlers(self) -> list[tuple[Any, Callable[[Any, Any], None]]]:
        """(neonize event type, handler) for NeonizeEvents.register."""
        from neonize.events import (
            ChatPresenceEv,
            GroupInfoEv,
            JoinedGroupEv,
            PresenceEv,
            ReceiptEv,
        )

        return [(ReceiptEv, self._ev_receipt), (PresenceEv, self._ev_presence),
                (ChatPresenceEv, self._ev_chat_presence), (JoinedGroupEv, self._ev_joined),
                (GroupInfoEv, self._ev_group_info)]

    def _emit(self, event: str, build: Callable[[], Any]) -> None:
        try:
            if not self._webhooks.wants(event):
                return
            data = build()
            if data is not None:
                self._webhooks.emit(event, data)
                self._ops.observe(f"event:{event}", "queued")
        except Exception:
            log.exception("account event failed", extra={"event": event})

    # --- neonize's callback thread -------------------------------------------------------------

    def _ev_receipt(self, _client: Any, ev: Any) -> None:
        self._emit("message.ack", lambda: conv.ack(ev))

    def _ev_presence(self, _client: Any, ev: Any) -> None:
        self._emit("presence.update", lambda: conv.presence(ev))

    def _ev_chat_presence(self, _client: Any, ev: Any) -> None:
        self._emit("presence.update", lambda: conv.chat_presence(ev))

    def _ev_joined(self, _client: Any, ev: Any) -> None:
        own = self._own_user()
        self._emit("group.join", lambda: conv.joined(ev, f"{own}@s.whatsapp.net" if own else None))

    def _ev_group_info(self, _client: Any, ev: Any) -> None:
        try:
            for event, data in conv.group_info(ev):
                self._emit(event, lambda data=data: data)  # type: ignore[misc]
        except Exception:
            log.exception("group event failed")

    def on_call(self, ev: Any) -> None:
        """A CallOfferEv: to the call thread (declining it is network I/O)."""
        try:
            self._calls.put_nowait(ev)
        except queue.Full:
            self._ops.observe("call", "dropped")
            log.warning("incoming call not handled: the call queue is full")

    # --- the call thread -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="calls", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self._calls.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._call(ev)
            except Exception:
                log.exception("call handling failed")

    def _call(self, ev: Any) -> None:
        rejected: bool | None = None
        if self._settings().reject_calls:
            rejected = self._reject_call(ev)
            self._ops.observe("call_reject", "ok" if rejected else "failed")
        self._emit("call", lambda: conv.call(ev, rejected))
