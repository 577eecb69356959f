"""The WhatsApp session: one neonize client, driven by the lifecycle state machine.

One control thread owns the state. Everything that happens — neonize events from its callback
thread, the Lease elector's verdicts, the end of a `connect()` call, shutdown — is posted to its
inbox as a lifecycle event; it applies `lifecycle.transition` and carries out the actions:
start a session (a thread blocked in neonize's synchronous `connect()`), stop it (`stop()`, from
this other thread, as neonize needs), publish the status report.

neonize's events reach this thread through `runtime/neonize_events.py`, where every handler is
registered (before `connect()`, as neonize needs) and translated into a lifecycle event.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from wabot.spec_view import PairingSpec
from wabot.status_view import WorkerReport

from ..core import lifecycle as lc
from ..core.proxy import ProxyUrl
from ..logs import get_logger
from ..metrics import Metrics
from .neonize_events import NeonizeEvents

log = get_logger("connection")

Publisher = Callable[[WorkerReport], None]


class _Barrier:
    """Not a lifecycle event: set once every event posted before it has been applied."""

    def __init__(self) -> None:
        self.done = threading.Event()


class ConnectionManager:
    def __init__(
        self,
        client: Any,
        *,
        metrics: Metrics,
        publish: Publisher,
        pairing: Callable[[], PairingSpec],
        on_message: Callable[[Any], Any],
        on_call: Callable[[Any], Any] | None = None,
        pod_name: str | None = None,
        policy: lc.Policy = lc.DEFAULT_POLICY,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        sessions_enabled: bool = True,
        terminal: bool | None = None,
        proxy: ProxyUrl | None = None,
        on_change: Callable[[lc.ConnState, lc.ConnState], None] | None = None,
        resuming: bool = False,
    ) -> None:
        """`resuming`: the worker starts with a linked session on its volume (a restart); the
        lifecycle then spreads its first dial and backs off longer until it has connected."""
        self.client = client
        self.events = NeonizeEvents(
            self.post, pairing=pairing, on_message=on_message, on_call=on_call, clock=clock,
            terminal=sys.stdout.isatty() if terminal is None else terminal)
        self._proxy = proxy
        self._on_change = on_change
        self._metrics = metrics
        self._publish = publish
        self._pod_name = pod_name
        self._policy = policy
        self._clock = clock
        self._rand = rand
        self._sessions_enabled = sessions_enabled
        self._inbox: queue.Queue[lc.Event | _Barrier] = queue.Queue()
        self._state = lc.ConnState(resuming=resuming)
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._session_thread: threading.Thread | None = None
        self._last_stop_call: float | None = None

    # --- wiring -------------------------------------------------------------------------------

    def register_handlers(self) -> None:
        """Register with neonize (before the first `connect()`): the handlers and their table
        are in `NeonizeEvents` (runtime/neonize_events.py)."""
        self.events.register(self.client)

    # --- state access (any thread) -------------------------------------------------------------

    @property
    def state(self) -> lc.ConnState:
        return self._state

    @property
    def policy(self) -> lc.Policy:
        return self._policy

    def ready(self) -> bool:
        return self._state.ready

    def can_send(self) -> bool:
        return self._state.ready

    def own_user(self) -> str | None:
        return self.events.own_user

    @property
    def alive(self) -> bool:
        return self._thread is not None and (self._thread.is_alive() or self._finished.is_set())

    def post(self, ev: lc.Event) -> None:
        self._inbox.put(ev)

    def sync(self, timeout_s: float = 5.0) -> bool:
        """Wait until every event posted so far (neonize's included) has been applied."""
        barrier = _Barrier()
        self._inbox.put(barrier)
        return barrier.done.wait(timeout_s)

    # --- the control thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="connection", daemon=True)
        self._thread.start()

    def shutdown(self, timeout_s: float) -> bool:
        """Stop the session and wait for it to end; True when it ended in time."""
        self.post(lc.Shutdown())
        return self._finished.wait(timeout_s)

    def _run(self) -> None:
        while not self._finished.is_set():
            wake = self._state.next_wakeup()
            timeout = 1.0 if wake is None else min(1.0, max(0.0, wake - self._clock()))
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                item = lc.Tick()
            if isinstance(item, _Barrier):
                item.done.set()
                continue
            ev: lc.Event = item
            try:
                self._apply(ev)
                self._repeat_stop()
            except Exception:
                log.exception("connection control loop error", extra={"event": repr(ev)})

    def _repeat_stop(self) -> None:
        """neonize's stop() is lost when it lands before connect() has set the session up;
        until the session has really ended, ask again every couple of seconds."""
        st = self._state
        if not (self._sessions_enabled and st.stop_requested and st.session_running):
            self._last_stop_call = None
            return
        now = time.monotonic()
        if self._last_stop_call is not None and now - self._last_stop_call >= 2.0:
            log.info("the WhatsApp session is still up; stopping it again")
            self._stop_session("repeat")

    def _apply(self, ev: lc.Event) -> None:
        before = self._state
        now = self._clock()
        after, actions = lc.transition(before, ev, now, self._rand(), self._policy)
        self._state = after
        if after.state is not before.state:
            log.info(
                "connection state changed",
                extra={
                    "from": before.state.value,
                    "to": after.state.value,
                    "event": type(ev).__name__,
                    "last_error": after.last_error,
                },
            )
        if self._on_change is not None and after is not before:
            try:
                self._on_change(before, after)
            except Exception:
                log.exception("state change hook failed")
        self._metrics.set_state(after.state)
        self._metrics.reconnects_to(after.reconnects)
        self._metrics.lease_held(after.lease_held)
        self._metrics.ready(after.ready)
        for action in actions:
            if isinstance(action, lc.StartSession):
                self._start_session()
            elif isinstance(action, lc.StopSession):
                self._stop_session(action.reason)
            elif isinstance(action, lc.Publish):
                self._do_publish(now)
            elif isinstance(action, lc.Finished):
                self._finished.set()

    def _do_publish(self, now: float) -> None:
        try:
            self._publish(lc.to_report(self._state, self._pod_name, now))
        except Exception:
            log.exception("status publish failed")

    def _start_session(self) -> None:
        self.events.session_started()
        if not self._sessions_enabled:
            return
        extra: dict[str, Any] = {"attempt": self._state.sessions_started}
        if self._proxy is not None:
            extra["proxy"] = self._proxy.display
        log.info("connecting to WhatsApp", extra=extra)
        self._session_thread = threading.Thread(
            target=self._session, name="neonize-session", daemon=True
        )
        self._session_thread.start()

    def _session(self) -> None:
        error: str | None = None
        try:
            if self._proxy is not None:
                # neonize hands ProxySettings to whatsmeow before it dials (the websocket and
                # media go through the proxy).
                from neonize._binder import ProxySettings

                self.client.connect(ProxySettings(proxy_address=self._proxy.url))
            else:
                self.client.connect()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if self._proxy is not None:
                error = self._proxy.scrub(error)
            error = error[:500]
        self.post(lc.SessionEnded(error))

    def _stop_session(self, reason: str) -> None:
        log.info("stopping the WhatsApp session", extra={"reason": reason})
        if not self._sessions_enabled:
            self.post(lc.SessionEnded(None))
            return
        self._last_stop_call = time.monotonic()
        try:
            self.client.stop()
        except Exception:
            log.exception("neonize stop() failed")
