"""The connection lifecycle as a pure function: (state, event) -> (new state, actions).

Everything that decides *what* the worker does with its WhatsApp session lives here, free of
threads, clocks and neonize, so every rule can be tested exhaustively:

- no session starts without the Lease (fencing), and losing the Lease stops the session;
- a failed or ended session is retried with capped, jittered backoff;
- a worker that starts with a linked session on its volume (a restart, not a new bot) spreads
  its first dial and waits long between failed dials until it has connected once (`Policy`);
- LoggedOut and StreamReplaced park the worker: retrying a logged-out device pairs it anew
  behind the user's back, and fighting a replaced stream gets the number logged out;
- TemporaryBan waits exactly as long as WhatsApp says (plus jitter) before dialling again;
- whatsmeow reconnects by itself after a drop, so a Disconnected only arms a watchdog that
  restarts the session if that self-healing does not happen in time.

The vocabulary (state, policy, events, actions, the report) is `connstate`, re-exported
here. The executor (runtime/connection.py) carries out the returned actions and feeds results
back as events.
"""

from __future__ import annotations

from dataclasses import replace

from wabot.states import WorkerState

from .connstate import (
    DEFAULT_POLICY,
    FIRST_QR_TTL_S,
    NEXT_QR_TTL_S,
    PAIR_CODE_TTL_S,
    Account,
    Action,
    ConfigBlocked,
    Connected,
    ConnectFailure,
    ConnState,
    Disconnected,
    Event,
    Finished,
    LeaseAcquired,
    LeaseLost,
    LoggedOut,
    PairCodeIssued,
    PairFailed,
    Pairing,
    Policy,
    Publish,
    QrIssued,
    RestartRequested,
    SessionEnded,
    Shutdown,
    StartSession,
    StopSession,
    StreamReplaced,
    TemporaryBan,
    Tick,
    to_report,
)

# The vocabulary is part of this module's face: callers write `lc.ConnState`, `lc.Tick()`.
__all__ = [
    "DEFAULT_POLICY",
    "FIRST_QR_TTL_S",
    "NEXT_QR_TTL_S",
    "PAIR_CODE_TTL_S",
    "Account",
    "Action",
    "ConfigBlocked",
    "ConnState",
    "ConnectFailure",
    "Connected",
    "Disconnected",
    "Event",
    "Finished",
    "LeaseAcquired",
    "LeaseLost",
    "LoggedOut",
    "PairCodeIssued",
    "PairFailed",
    "Pairing",
    "Policy",
    "Publish",
    "QrIssued",
    "RestartRequested",
    "SessionEnded",
    "Shutdown",
    "StartSession",
    "StopSession",
    "StreamReplaced",
    "TemporaryBan",
    "Tick",
    "to_report",
    "transition",
]


def _stop(s: ConnState, reason: str) -> tuple[ConnState, list[Action]]:
    if s.session_running and not s.stop_requested:
        return replace(s, stop_requested=True, watchdog_at=None), [StopSession(reason)]
    return s, []


def _maybe_start(s: ConnState, now: float, policy: Policy) -> tuple[ConnState, list[Action]]:
    if (
        not s.lease_held
        or s.session_running
        or s.parked
        or s.stopping
        or (s.retry_at is not None and now < s.retry_at)
    ):
        return s, []
    s = replace(
        s,
        state=WorkerState.CONNECTING,
        session_running=True,
        stop_requested=False,
        retry_at=None,
        watchdog_at=now + policy.watchdog_s,
        sessions_started=s.sessions_started + 1,
        reconnects=s.reconnects + (1 if s.sessions_started > 0 else 0),
    )
    return s, [StartSession()]


Result = tuple[ConnState, list[Action]]


def transition(
    s: ConnState, ev: Event, now: float, rand: float, policy: Policy = DEFAULT_POLICY
) -> Result:
    """The next state and the actions to carry out. `rand` is a uniform draw in [0, 1).

    The events of the first group are handled in every state; those of the second only while
    the worker is neither stopping nor parked: late events from a session being torn down
    change nothing any more."""
    if s.finished:
        return s, []
    if isinstance(ev, Shutdown):
        return _on_shutdown(s)
    if isinstance(ev, ConfigBlocked):
        return _on_config_blocked(s, ev)
    if isinstance(ev, LeaseAcquired):
        return _on_lease_acquired(s, now, rand, policy)
    if isinstance(ev, LeaseLost):
        return _on_lease_lost(s, ev)
    if isinstance(ev, SessionEnded):
        return _on_session_ended(s, ev, now, rand, policy)
    if isinstance(ev, Tick):
        return _on_tick(s, now, policy)
    if isinstance(ev, RestartRequested):
        return _on_restart_requested(s, ev, now, policy)
    if s.stopping or s.parked:
        return s, []
    return _session_event(s, ev, now, rand, policy)


def _session_event(s: ConnState, ev: Event, now: float, rand: float, policy: Policy) -> Result:
    """What the running session reports: pairing, connection and the ways WhatsApp ends it."""
    if isinstance(ev, QrIssued):
        return _pairing(s, Pairing("qr", ev.payload, ev.expires_at), policy)
    if isinstance(ev, PairCodeIssued):
        return _pairing(s, Pairing("code", ev.code, ev.expires_at), policy)
    if isinstance(ev, PairFailed):
        return replace(s, last_error=f"pairing failed: {ev.error}"), [Publish()]
    if isinstance(ev, Connected):
        return _on_connected(s, ev, now)
    if isinstance(ev, Disconnected):
        return _on_disconnected(s, now, policy)
    if isinstance(ev, ConnectFailure):
        return replace(s, last_error=f"connect failure: {ev.reason}"), [Publish()]
    if isinstance(ev, LoggedOut):
        return _on_logged_out(s, ev)
    if isinstance(ev, StreamReplaced):
        return _on_stream_replaced(s)
    if isinstance(ev, TemporaryBan):
        return _on_temporary_ban(s, ev, now, rand, policy)
    raise TypeError(f"unknown event {ev!r}")  # pragma: no cover - exhaustiveness guard


# --- events handled in every state ------------------------------------------------------------


def _on_shutdown(s: ConnState) -> Result:
    s = replace(s, stopping=True, retry_at=None)
    if s.session_running:
        return _stop(s, "shutdown")
    return replace(s, state=WorkerState.STOPPED, finished=True), [Publish(), Finished()]


def _on_config_blocked(s: ConnState, ev: ConfigBlocked) -> Result:
    s = replace(
        s,
        state=WorkerState.DISCONNECTED,
        parked=True,
        pairing=None,
        retry_at=None,
        last_error=ev.message,
        error_reason=ev.reason,
    )
    s, actions = _stop(s, "configuration problem")
    return s, [*actions, Publish()]


def _on_lease_acquired(s: ConnState, now: float, rand: float, policy: Policy) -> Result:
    s = replace(s, lease_held=True)
    if s.resuming and s.sessions_started == 0 and s.retry_at is None:
        # A restart: spread the first dial (a LeaseAcquired again does not redraw it).
        s = replace(s, retry_at=now + rand * policy.resume_jitter_s)
    s, actions = _maybe_start(s, now, policy)
    return s, [*actions, Publish()]


def _on_lease_lost(s: ConnState, ev: LeaseLost) -> Result:
    error = s.last_error if s.error_reason else f"lease lost: {ev.reason}"
    s = replace(s, lease_held=False, retry_at=None, last_error=error)
    s, actions = _stop(s, "lease lost")
    if s.state in (WorkerState.CONNECTED, WorkerState.CONNECTING, WorkerState.PAIRING):
        s = replace(s, state=WorkerState.DISCONNECTED, pairing=None)
    return s, [*actions, Publish()]


def _on_session_ended(
    s: ConnState, ev: SessionEnded, now: float, rand: float, policy: Policy
) -> Result:
    was_requested = s.stop_requested
    s = replace(s, session_running=False, stop_requested=False, watchdog_at=None, pairing=None)
    if s.stopping:
        return replace(s, state=WorkerState.STOPPED, finished=True), [Publish(), Finished()]
    if s.restart_now and not s.parked:
        s, actions = _maybe_start(replace(s, restart_now=False, retry_at=None), now, policy)
        return s, [*actions, Publish()]
    if s.parked or s.state is WorkerState.TEMPORARY_BAN:
        return s, [Publish()]
    if not s.lease_held:
        if s.state is not WorkerState.STARTING:
            s = replace(s, state=WorkerState.DISCONNECTED)
        return s, [Publish()]
    failures = s.failures + 1
    error = ev.error or (None if was_requested else "session ended")
    if s.resuming and policy.resume_at_cap:
        delay = policy.backoff.at_cap(rand)
    else:
        delay = policy.backoff.delay(failures, rand)
    s = replace(
        s,
        state=WorkerState.DISCONNECTED,
        failures=failures,
        retry_at=now + delay,
        last_error=error or s.last_error,
    )
    return s, [Publish()]


def _on_tick(s: ConnState, now: float, policy: Policy) -> Result:
    if (
        s.session_running
        and not s.stop_requested
        and s.watchdog_at is not None
        and now >= s.watchdog_at
        and s.state is not WorkerState.CONNECTED
    ):
        s = replace(s, last_error="no progress from the session; restarting it")
        s, actions = _stop(s, "watchdog")
        return s, [*actions, Publish()]
    before = s
    s, actions = _maybe_start(s, now, policy)
    return s, ([*actions, Publish()] if s is not before else [])


def _on_restart_requested(s: ConnState, ev: RestartRequested, now: float,
                          policy: Policy) -> Result:
    """A fresh session now: not while stopping, and not past a configuration problem or a
    temporary ban (dialling during a ban is what gets numbers banned for good)."""
    if s.stopping or s.error_reason or s.state is WorkerState.TEMPORARY_BAN:
        return s, []
    s = replace(s, state=WorkerState.CONNECTING, parked=False, retry_at=None, failures=0,
                pairing=None, last_error=f"session restarted: {ev.reason}")
    if s.session_running:
        if s.stop_requested:
            return replace(s, restart_now=True), [Publish()]
        s, actions = _stop(replace(s, restart_now=True), "restart requested")
        return s, [*actions, Publish()]
    s, actions = _maybe_start(s, now, policy)
    return s, [*actions, Publish()]


# --- events of a running session -------------------------------------------------------------


def _pairing(s: ConnState, pairing: Pairing, policy: Policy) -> Result:
    """A QR code or a pairing code to show: the watchdog waits until it expires, plus grace."""
    s = replace(
        s,
        state=WorkerState.PAIRING,
        pairing=pairing,
        watchdog_at=pairing.expires_at + policy.pairing_grace_s,
    )
    return s, [Publish()]


def _on_connected(s: ConnState, ev: Connected, now: float) -> Result:
    actions: list[Action] = []
    s = replace(
        s,
        state=WorkerState.CONNECTED,
        failures=0,
        resuming=False,
        pairing=None,
        account=ev.account or s.account,
        last_connected_at=now,
        watchdog_at=None,
        retry_at=None,
        last_error=None,
        error_reason=None,
    )
    if not s.lease_held:
        # Also when a stop was already requested: a stop() that reached neonize before its
        # connect() had begun is lost, and this session must not stay up without the Lease.
        s = replace(s, stop_requested=True, watchdog_at=None)
        actions = [StopSession("connected without the lease")]
    return s, [*actions, Publish()]


def _on_disconnected(s: ConnState, now: float, policy: Policy) -> Result:
    if s.state is not WorkerState.CONNECTED or s.stop_requested:
        return s, []
    s = replace(
        s,
        state=WorkerState.DISCONNECTED,
        reconnects=s.reconnects + 1,
        watchdog_at=now + policy.watchdog_s,
    )
    return s, [Publish()]


def _on_logged_out(s: ConnState, ev: LoggedOut) -> Result:
    s = replace(s, account=None)
    return _park(s, WorkerState.LOGGED_OUT, f"logged out: {ev.reason}; pair the bot again",
                 "logged out")


def _on_stream_replaced(s: ConnState) -> Result:
    return _park(s, WorkerState.STREAM_REPLACED,
                 "another client took over this session; not reconnecting", "stream replaced")


def _park(s: ConnState, state: WorkerState, error: str, stop_reason: str) -> Result:
    """Stop the session and never dial again on its own: retrying a logged-out device pairs it
    anew behind the user's back, and fighting a replaced stream gets the number logged out."""
    s = replace(s, state=state, parked=True, pairing=None, retry_at=None, last_error=error)
    s, actions = _stop(s, stop_reason)
    return s, [*actions, Publish()]


def _on_temporary_ban(
    s: ConnState, ev: TemporaryBan, now: float, rand: float, policy: Policy
) -> Result:
    wait = max(ev.expire_s, policy.backoff.min_s) + rand * policy.ban_jitter_s
    s = replace(
        s,
        state=WorkerState.TEMPORARY_BAN,
        pairing=None,
        retry_at=now + wait,
        last_error=f"temporarily banned ({ev.reason}); retrying in {int(wait)} s",
    )
    s, actions = _stop(s, "temporary ban")
    return s, [*actions, Publish()]
