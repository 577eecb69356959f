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

The executor (connection.py) carries out the returned actions and feeds results back as events.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from wabot.spec import AccountStatus, PairingStatus, WorkerReport, WorkerState

from .backoff import BackoffPolicy

# WhatsApp's QR rotation: the first code lives 60 s, each following one 20 s.
FIRST_QR_TTL_S = 60.0
NEXT_QR_TTL_S = 20.0
# A link-with-phone-number code is typed by a human; WhatsApp keeps it valid a few minutes.
PAIR_CODE_TTL_S = 180.0


def _dial_backoff() -> BackoffPolicy:
    return BackoffPolicy(base_s=1.0, cap_s=300.0, min_s=0.5, jitter="equal")


@dataclass(frozen=True)
class Policy:
    """How the worker paces its dials. The numbers are set for a fleet restart: the operator
    re-creates 1,000 pods at 3-4/s (WABOT_OPERATOR_POD_RESTARTS_PER_SECOND) and WhatsApp must not
    see more than 20 dials/s in any second (bench/reconnect.py simulates this rulebook).

    - A new bot (no linked session on its volume) dials as soon as it holds the Lease: someone
      is waiting for its QR code.
    - A resuming worker (it had a linked session, so it is being restarted, most likely with
      many others) draws its first dial uniformly within `resume_jitter_s` of the Lease: nodes
      report pods Running in clumps (26 in one second in a measured 1,000-pod restart), and
      20 s turns such a clump into ~1.3 dials/s; the mean extra wait is 10 s.
    - After a failed or ended session: `backoff`, equal jitter from 1 s doubling to 300 s
      ([0.5, 1] s, [1, 2] s, ... [150, 300] s). The first retry after a drop comes 0.75 s
      later on average (0.625 s with the full jitter used before). Equal rather than full
      jitter: at the cap a worker never redials sooner than 150 s, so 1,000 bots in a long
      outage average 4.4 dials/s instead of 6.7/s.
    - A resuming worker whose dials fail before it has ever connected retries at the cap stage
      at once (`resume_at_cap`, [150, 300] s). While the fleet is being re-created each worker
      then dials 1.6 times on average in its first 250 s instead of 9.6, so 4 new pods/s cost
      ~6.4 dials/s instead of ~38 during a WhatsApp outage. The 20/s limit is about single
      seconds, where random clumps add up: the simulated 1-second peaks stay at or below 17
      over 20 random seeds. The price: a restarted bot whose first dial fails waits 225 s on
      average for the next one.
    """

    backoff: BackoffPolicy = field(default_factory=_dial_backoff)
    # The first dial of a resuming worker: uniform in [0, resume_jitter_s] after the Lease.
    resume_jitter_s: float = 20.0
    # A resuming worker that has not connected yet backs off at the cap from its first failure.
    resume_at_cap: bool = True
    # How long whatsmeow may try to heal a dropped connection (or a dial may hang) before the
    # worker restarts the session itself.
    watchdog_s: float = 90.0
    # Grace after a pairing payload expires without a fresh one before restarting the session.
    pairing_grace_s: float = 30.0
    # Spread of the redial after a temporary ban, so banned bots do not all return at once.
    ban_jitter_s: float = 30.0


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Pairing:
    method: str  # "qr" | "code"
    payload: str
    expires_at: float


@dataclass(frozen=True)
class Account:
    jid: str
    push_name: str | None = None


@dataclass(frozen=True)
class ConnState:
    state: WorkerState = WorkerState.STARTING
    lease_held: bool = False
    session_running: bool = False
    stop_requested: bool = False
    parked: bool = False
    stopping: bool = False
    finished: bool = False
    # Started with a linked session on the volume (a restart) and not connected since.
    resuming: bool = False
    failures: int = 0
    reconnects: int = 0
    sessions_started: int = 0
    retry_at: float | None = None
    watchdog_at: float | None = None
    pairing: Pairing | None = None
    account: Account | None = None
    last_connected_at: float | None = None
    last_error: str | None = None
    error_reason: str | None = None

    @property
    def ready(self) -> bool:
        """Serving: connected to WhatsApp and entitled to be (holding the Lease)."""
        return self.state is WorkerState.CONNECTED and self.lease_held and not self.stopping

    def next_wakeup(self) -> float | None:
        times = [t for t in (self.retry_at, self.watchdog_at) if t is not None]
        return min(times) if times else None


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseAcquired:
    pass


@dataclass(frozen=True)
class LeaseLost:
    reason: str


@dataclass(frozen=True)
class SessionEnded:
    error: str | None = None


@dataclass(frozen=True)
class QrIssued:
    payload: str
    expires_at: float


@dataclass(frozen=True)
class PairCodeIssued:
    code: str
    expires_at: float


@dataclass(frozen=True)
class PairFailed:
    error: str


@dataclass(frozen=True)
class Connected:
    account: Account | None = None


@dataclass(frozen=True)
class Disconnected:
    pass


@dataclass(frozen=True)
class ConnectFailure:
    reason: str


@dataclass(frozen=True)
class LoggedOut:
    reason: str


@dataclass(frozen=True)
class StreamReplaced:
    pass


@dataclass(frozen=True)
class TemporaryBan:
    reason: str
    expire_s: float


@dataclass(frozen=True)
class ConfigBlocked:
    """The configuration makes a session impossible or unsafe (e.g. an invalid proxy URL):
    never start one; report `reason` (machine-readable) and `message` until a new pod comes."""

    reason: str
    message: str


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Shutdown:
    pass


Event = (
    LeaseAcquired
    | LeaseLost
    | SessionEnded
    | QrIssued
    | PairCodeIssued
    | PairFailed
    | Connected
    | Disconnected
    | ConnectFailure
    | LoggedOut
    | StreamReplaced
    | TemporaryBan
    | ConfigBlocked
    | Tick
    | Shutdown
)

# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartSession:
    pass


@dataclass(frozen=True)
class StopSession:
    reason: str


@dataclass(frozen=True)
class Publish:
    pass


@dataclass(frozen=True)
class Finished:
    pass


Action = StartSession | StopSession | Publish | Finished


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


def transition(
    s: ConnState, ev: Event, now: float, rand: float, policy: Policy = DEFAULT_POLICY
) -> tuple[ConnState, list[Action]]:
    """The next state and the actions to carry out. `rand` is a uniform draw in [0, 1)."""
    if s.finished:
        return s, []
    actions: list[Action] = []

    if isinstance(ev, Shutdown):
        s = replace(s, stopping=True, retry_at=None)
        if s.session_running:
            s, acts = _stop(s, "shutdown")
            return s, acts
        return replace(s, state=WorkerState.STOPPED, finished=True), [Publish(), Finished()]

    if isinstance(ev, ConfigBlocked):
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

    if isinstance(ev, LeaseAcquired):
        s = replace(s, lease_held=True)
        if s.resuming and s.sessions_started == 0 and s.retry_at is None:
            # A restart: spread the first dial (a LeaseAcquired again does not redraw it).
            s = replace(s, retry_at=now + rand * policy.resume_jitter_s)
        s, actions = _maybe_start(s, now, policy)
        return s, [*actions, Publish()]

    if isinstance(ev, LeaseLost):
        error = s.last_error if s.error_reason else f"lease lost: {ev.reason}"
        s = replace(s, lease_held=False, retry_at=None, last_error=error)
        s, actions = _stop(s, "lease lost")
        if s.state in (WorkerState.CONNECTED, WorkerState.CONNECTING, WorkerState.PAIRING):
            s = replace(s, state=WorkerState.DISCONNECTED, pairing=None)
        return s, [*actions, Publish()]

    if isinstance(ev, SessionEnded):
        was_requested = s.stop_requested
        s = replace(s, session_running=False, stop_requested=False, watchdog_at=None, pairing=None)
        if s.stopping:
            return replace(s, state=WorkerState.STOPPED, finished=True), [Publish(), Finished()]
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

    if isinstance(ev, Tick):
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

    if s.stopping or s.parked:
        # Late events from a session being torn down change nothing any more.
        return s, []

    if isinstance(ev, QrIssued):
        pairing = Pairing("qr", ev.payload, ev.expires_at)
        s = replace(
            s,
            state=WorkerState.PAIRING,
            pairing=pairing,
            watchdog_at=ev.expires_at + policy.pairing_grace_s,
        )
        return s, [Publish()]

    if isinstance(ev, PairCodeIssued):
        pairing = Pairing("code", ev.code, ev.expires_at)
        s = replace(
            s,
            state=WorkerState.PAIRING,
            pairing=pairing,
            watchdog_at=ev.expires_at + policy.pairing_grace_s,
        )
        return s, [Publish()]

    if isinstance(ev, PairFailed):
        return replace(s, last_error=f"pairing failed: {ev.error}"), [Publish()]

    if isinstance(ev, Connected):
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

    if isinstance(ev, Disconnected):
        if s.state is not WorkerState.CONNECTED or s.stop_requested:
            return s, []
        s = replace(
            s,
            state=WorkerState.DISCONNECTED,
            reconnects=s.reconnects + 1,
            watchdog_at=now + policy.watchdog_s,
        )
        return s, [Publish()]

    if isinstance(ev, ConnectFailure):
        return replace(s, last_error=f"connect failure: {ev.reason}"), [Publish()]

    if isinstance(ev, LoggedOut):
        s = replace(
            s,
            state=WorkerState.LOGGED_OUT,
            parked=True,
            account=None,
            pairing=None,
            retry_at=None,
            last_error=f"logged out: {ev.reason}; pair the bot again",
        )
        s, actions = _stop(s, "logged out")
        return s, [*actions, Publish()]

    if isinstance(ev, StreamReplaced):
        s = replace(
            s,
            state=WorkerState.STREAM_REPLACED,
            parked=True,
            pairing=None,
            retry_at=None,
            last_error="another client took over this session; not reconnecting",
        )
        s, actions = _stop(s, "stream replaced")
        return s, [*actions, Publish()]

    if isinstance(ev, TemporaryBan):
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

    raise TypeError(f"unknown event {ev!r}")  # pragma: no cover - exhaustiveness guard


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def to_report(s: ConnState, pod_name: str | None, now: float) -> WorkerReport:
    """The status.worker subtree for this state: never any session secret, only what a human
    needs to pair and to see where the bot stands."""
    pairing = None
    if s.pairing is not None:
        if s.pairing.method == "qr":
            pairing = PairingStatus(
                method="qr", qr=s.pairing.payload, expires_at=_ts(s.pairing.expires_at)
            )
        else:
            pairing = PairingStatus(
                method="code", code=s.pairing.payload, expires_at=_ts(s.pairing.expires_at)
            )
    account = None
    if s.account is not None:
        account = AccountStatus(jid=s.account.jid, push_name=s.account.push_name or None)
    return WorkerReport(
        state=s.state,
        pod_name=pod_name,
        pairing=pairing,
        account=account,
        last_connected_at=_ts(s.last_connected_at),
        last_error=(s.last_error or None) and s.last_error[:1024],
        error_reason=s.error_reason,
        reconnects=s.reconnects,
        updated_at=_ts(now) or datetime.now(UTC),
    )
