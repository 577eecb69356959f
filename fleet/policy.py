"""What the supervisor decides, as pure functions of (slot, event, now): no processes, clocks or
randomness of their own, so every rule is unit-tested (tests/fleet/test_policy.py).

The rules, in words:
- A crashed process whose bot should run is restarted after a capped exponential delay with
  jitter; a process that had run for `stable_after_s` before it crashed starts the count anew,
  so a bot that crashes once a day is back in a second, not after the cap.
- A stop is SIGTERM, then SIGKILL once `grace_s` has passed.
- A requested restart is a stop followed by an immediate start (no backoff).
- A process whose health endpoint fails `liveness_failures` probes in a row (after
  `liveness_initial_delay_s`) is stopped and treated as a crash, as a kubelet would.
- Every decision touches one slot; nothing a bot does can change another bot's slot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from wabot.backoff import capped_exponential


class State(enum.StrEnum):
    PENDING = "pending"  # should run, not started yet (or a restart was requested)
    RUNNING = "running"
    BACKOFF = "backoff"  # exited unexpectedly; waiting for retry_at
    STOPPING = "stopping"  # SIGTERM sent; SIGKILL at kill_at
    STOPPED = "stopped"  # not wanted (stopped on request, suspended or being removed)


class Action(enum.StrEnum):
    NONE = "none"
    START = "start"
    TERMINATE = "terminate"
    KILL = "kill"


class StopReason(enum.StrEnum):
    STOP = "stop"
    RESTART = "restart"
    LIVENESS = "liveness"


@dataclass(frozen=True)
class RestartPolicy:
    base_s: float = 1.0
    cap_s: float = 60.0
    stable_after_s: float = 60.0
    grace_s: float = 30.0
    liveness_failures: int = 3
    liveness_initial_delay_s: float = 30.0

    def ceiling(self, failures: int) -> float:
        return capped_exponential(self.base_s, self.cap_s, failures)

    def delay(self, failures: int, rand: float) -> float:
        """Equal jitter: half the ceiling fixed, half drawn, so the delay still grows with
        every failure while bots that crash together do not restart together."""
        ceiling = self.ceiling(failures)
        rand = min(max(rand, 0.0), 1.0)
        return ceiling / 2 + rand * ceiling / 2


@dataclass(frozen=True)
class Slot:
    """The supervisor's view of one supervised process."""

    desired: bool = True
    state: State = State.PENDING
    pid: int | None = None
    restarts: int = 0
    failures: int = 0
    last_exit_code: int | None = None
    started_at: float | None = None
    retry_at: float | None = None
    kill_at: float | None = None
    stop_reason: StopReason | None = None
    live: bool | None = None
    live_failures: int = 0


def plan(slot: Slot, now: float, policy: RestartPolicy) -> Action:
    if slot.state is State.RUNNING:
        if not slot.desired or slot.stop_reason is StopReason.RESTART:
            return Action.TERMINATE
        if slot.live_failures >= policy.liveness_failures:
            return Action.TERMINATE
        return Action.NONE
    if slot.state is State.STOPPING:
        return Action.KILL if slot.kill_at is not None and now >= slot.kill_at else Action.NONE
    if not slot.desired:
        return Action.NONE
    if slot.state is State.PENDING:
        return Action.START
    if slot.state is State.BACKOFF and slot.retry_at is not None and now >= slot.retry_at:
        return Action.START
    return Action.NONE


def started(slot: Slot, pid: int, now: float) -> Slot:
    return replace(slot, state=State.RUNNING, pid=pid, started_at=now, retry_at=None,
                   kill_at=None, stop_reason=None, live=None, live_failures=0)


def start_failed(slot: Slot, now: float, rand: float, policy: RestartPolicy) -> Slot:
    """The process could not even be spawned: a failure like a crash."""
    failures = slot.failures + 1
    return replace(slot, state=State.BACKOFF, pid=None, failures=failures,
                   retry_at=now + policy.delay(failures, rand))


def terminating(slot: Slot, now: float, policy: RestartPolicy) -> Slot:
    """SIGTERM was sent; the reason decides what happens when the process is gone."""
    if not slot.desired:
        reason = StopReason.STOP
    elif slot.live_failures >= policy.liveness_failures:
        reason = StopReason.LIVENESS
    else:
        reason = slot.stop_reason or StopReason.RESTART
    return replace(slot, state=State.STOPPING, kill_at=now + policy.grace_s, stop_reason=reason)


def exited(slot: Slot, code: int, now: float, rand: float, policy: RestartPolicy) -> Slot:
    base = replace(slot, pid=None, last_exit_code=code, kill_at=None, live=None,
                   live_failures=0)
    requested = slot.state is State.STOPPING
    if not slot.desired:
        return replace(base, state=State.STOPPED, stop_reason=None)
    if requested and slot.stop_reason is StopReason.RESTART:
        return replace(base, state=State.PENDING, restarts=slot.restarts + 1, failures=0,
                       stop_reason=None)
    # A crash (or a liveness kill): back off, counting quick failures in a row.
    uptime = now - slot.started_at if slot.started_at is not None else 0.0
    failures = 1 if uptime >= policy.stable_after_s else slot.failures + 1
    return replace(base, state=State.BACKOFF, restarts=slot.restarts + 1, failures=failures,
                   retry_at=now + policy.delay(failures, rand), stop_reason=None)


def probed(slot: Slot, ok: bool, now: float, policy: RestartPolicy) -> Slot:
    if slot.state is not State.RUNNING:
        return slot
    if ok:
        return replace(slot, live=True, live_failures=0)
    in_grace = (slot.started_at is not None
                and now - slot.started_at < policy.liveness_initial_delay_s)
    return replace(slot, live=False,
                   live_failures=slot.live_failures if in_grace else slot.live_failures + 1)


def want(slot: Slot, desired: bool) -> Slot:
    """Start or stop on request (or because the bots file changed)."""
    state: State
    if desired:
        state = State.PENDING if slot.state is State.STOPPED else slot.state
        return replace(slot, desired=True, state=state)
    state = State.STOPPED if slot.state in (State.PENDING, State.BACKOFF) else slot.state
    return replace(slot, desired=False, state=state, retry_at=None)


def restart(slot: Slot, now: float) -> Slot:
    """A requested restart: a running process is stopped and started again at once; a bot
    waiting in backoff is started now; a stopped bot is started."""
    if slot.state is State.RUNNING:
        return replace(slot, desired=True, stop_reason=StopReason.RESTART)
    if slot.state is State.BACKOFF:
        return replace(slot, desired=True, retry_at=now, failures=0)
    if slot.state is State.STOPPED:
        return replace(slot, desired=True, state=State.PENDING)
    return replace(slot, desired=True)


def wants_restart(slot: Slot) -> bool:
    return slot.state is State.RUNNING and slot.stop_reason is StopReason.RESTART
