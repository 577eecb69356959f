"""The vocabulary of the connection lifecycle: the state (`ConnState`), the pacing `Policy`,
the events the session reports, the actions the rules return, and the `status.worker` report
made from a state. Pure data; the rules themselves are `lifecycle.transition`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from wabot.states import WorkerState
from wabot.status_view import AccountStatus, PairingStatus, WorkerReport

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
    # A restart was asked for (session control): when the session being stopped has ended,
    # the next one starts at once, without counting a failure.
    restart_now: bool = False

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
class RestartRequested:
    """Someone asked for a fresh session (the session API or the WhatsAppBot's annotation):
    stop the one running, if any, and start a new one at once, also out of a parked state
    (logged out or replaced): a human asking is exactly what parking waits for."""

    reason: str


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
    | RestartRequested
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


# --- the report ---------------------------------------------------------------------------------


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
