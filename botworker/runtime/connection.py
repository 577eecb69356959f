"""The WhatsApp session: one neonize client, driven by the lifecycle state machine.

One control thread owns the state. Everything that happens — neonize events from its callback
thread, the Lease elector's verdicts, the end of a `connect()` call, shutdown — is posted to its
inbox as a lifecycle event; it applies `lifecycle.transition` and carries out the actions:
start a session (a thread blocked in neonize's synchronous `connect()`), stop it (`stop()`, from
this other thread, as neonize needs), publish the status report.

neonize facts this relies on (../shared/notes/neonize.md): handlers must be registered before
`connect()`; exceptions in them are swallowed, so each one catches its own; `PairPhone` only
works once the socket is up, so it is called from the QR callback; `get_me()` aborts the
process unless connected, so it is only called when `is_connected` says so.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from wabot.spec import PairingSpec, WorkerReport

from ..core import lifecycle as lc
from ..core.proxy import ProxyUrl
from ..logs import get_logger
from ..metrics import Metrics

log = get_logger("connection")

Publisher = Callable[[WorkerReport], None]


class _Barrier:
    """Not a lifecycle event: set once every event posted before it has been applied."""

    def __init__(self) -> None:
        self.done = threading.Event()


def _enum_name(msg: Any, field: str) -> str:
    try:
        value = getattr(msg, field)
        enum_type = msg.DESCRIPTOR.fields_by_name[field].enum_type
        return str(enum_type.values_by_number[value].name)
    except Exception:
        return "UNKNOWN"


def draw_qr(payload: str, stream: Any = None) -> None:
    """Draw the QR in the terminal (someone is running the worker by hand)."""
    import segno

    segno.make_qr(payload).terminal(out=stream or sys.stdout, compact=True)


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
        self._proxy = proxy
        self._on_change = on_change
        self._metrics = metrics
        self._publish = publish
        self._pairing = pairing
        self._on_message = on_message
        self._on_call = on_call
        self._pod_name = pod_name
        self._policy = policy
        self._clock = clock
        self._rand = rand
        self._sessions_enabled = sessions_enabled
        self._terminal = sys.stdout.isatty() if terminal is None else terminal
        self._inbox: queue.Queue[lc.Event | _Barrier] = queue.Queue()
        self._state = lc.ConnState(resuming=resuming)
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._session_thread: threading.Thread | None = None
        self._qr_count = 0
        self._code_requested = False
        self._last_stop_call: float | None = None
        self._own_user: str | None = None
        self._handlers: list[Any] = []

    # --- wiring -------------------------------------------------------------------------------

    def register_handlers(self) -> None:
        """Register with neonize; must happen before the first `connect()`."""
        from neonize.events import (
            CallOfferEv,
            ConnectedEv,
            ConnectFailureEv,
            DisconnectedEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
            StreamReplacedEv,
            TemporaryBanEv,
        )

        pairs: list[tuple[Any, Callable[[Any, Any], None]]] = [
            (MessageEv, self._ev_message),
            (ConnectedEv, self._ev_connected),
            (DisconnectedEv, self._ev_disconnected),
            (LoggedOutEv, self._ev_logged_out),
            (StreamReplacedEv, self._ev_stream_replaced),
            (TemporaryBanEv, self._ev_temporary_ban),
            (ConnectFailureEv, self._ev_connect_failure),
            (PairStatusEv, self._ev_pair_status),
            (CallOfferEv, self._ev_call_offer),
        ]
        for ev_type, handler in pairs:
            # neonize keeps bound methods as weak references: keep them alive here.
            self._handlers.append(handler)
            self.client.event(ev_type)(handler)
        self._handlers.append(self._ev_qr)
        self.client.event.qr(self._ev_qr)

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
        return self._own_user

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
        self._qr_count = 0
        self._code_requested = False
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

    # --- neonize callbacks (neonize's thread: post and return) ----------------------------------

    def _ev_message(self, _client: Any, ev: Any) -> None:
        try:
            self._on_message(ev)
        except Exception:
            log.exception("message handoff failed")

    def _ev_call_offer(self, _client: Any, ev: Any) -> None:
        try:
            if self._on_call is not None:
                self._on_call(ev)
        except Exception:
            log.exception("call handoff failed")

    def _ev_connected(self, client: Any, _ev: Any) -> None:
        try:
            self.post(lc.Connected(self._account(getattr(client, "me", None))))
            # get_me() is a call back into Go; not from inside Go's own event dispatch.
            threading.Thread(
                target=self._fetch_account, args=(client,), name="get-me", daemon=True
            ).start()
        except Exception:
            log.exception("connected handler failed")
            self.post(lc.Connected(None))

    def _fetch_account(self, client: Any) -> None:
        try:
            # get_me() aborts the whole process unless the client is connected (neonize.md).
            if not client.is_connected:
                return
            account = self._account(client.get_me())
        except Exception:
            log.exception("could not read the linked account")
            return
        if account is not None:
            self.post(lc.Connected(account))

    def _account(self, me: Any) -> lc.Account | None:
        from neonize.utils.jid import Jid2String

        if me is None or not me.JID.User:
            return None
        jid = str(Jid2String(me.JID))
        self._own_user = jid.split("@", 1)[0].split(":", 1)[0]
        push = me.PushName if isinstance(me.PushName, str) else None
        return lc.Account(jid=jid, push_name=push or None)

    def _ev_disconnected(self, _client: Any, _ev: Any) -> None:
        self.post(lc.Disconnected())

    def _ev_logged_out(self, _client: Any, ev: Any) -> None:
        self.post(lc.LoggedOut(_enum_name(ev, "Reason")))

    def _ev_stream_replaced(self, _client: Any, _ev: Any) -> None:
        self.post(lc.StreamReplaced())

    def _ev_temporary_ban(self, _client: Any, ev: Any) -> None:
        try:
            expire = float(ev.Expire)
        except Exception:
            expire = 3600.0
        self.post(lc.TemporaryBan(_enum_name(ev, "Code"), expire))

    def _ev_connect_failure(self, _client: Any, ev: Any) -> None:
        reason = _enum_name(ev, "Reason")
        message = ev.Message if isinstance(ev.Message, str) else ""
        self.post(lc.ConnectFailure(f"{reason} {message}".strip()))

    def _ev_pair_status(self, _client: Any, ev: Any) -> None:
        if ev.Error:
            self.post(lc.PairFailed(str(ev.Error)[:300]))
        else:
            log.info("paired with a phone")

    def _ev_qr(self, client: Any, data: bytes) -> None:
        try:
            pairing = self._pairing()
            now = self._clock()
            if pairing.method == "code" and pairing.phone_number:
                if self._code_requested:
                    return
                self._code_requested = True
                self._request_code(client, pairing.phone_number, now)
                return
            ttl = lc.FIRST_QR_TTL_S if self._qr_count == 0 else lc.NEXT_QR_TTL_S
            self._qr_count += 1
            payload = data.decode("utf-8", errors="replace")
            self.post(lc.QrIssued(payload, now + ttl))
            log.info("pairing QR issued; scan it from WhatsApp > Linked devices")
            if self._terminal:
                draw_qr(payload)
        except Exception:
            log.exception("QR handler failed")

    def _request_code(self, client: Any, phone: str, now: float) -> None:
        try:
            # show_push_notification: the phone shows "enter code" as soon as it is issued.
            code = client.PairPhone(phone, True)
        except Exception as exc:
            self.post(lc.PairFailed(f"{type(exc).__name__}: {exc}"[:300]))
            return
        self.post(lc.PairCodeIssued(str(code), now + lc.PAIR_CODE_TTL_S))
        log.info("pairing code issued; enter it in WhatsApp > Linked devices")
        if self._terminal:
            print(f"WhatsApp pairing code: {code}", flush=True)

