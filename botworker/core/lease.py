"""Lease election decisions, pure: who may hold the bot's Lease, and when a holder must let go.

The rules follow client-go's leader election, which has been argued over for years:

- Expiry is judged by the contender's own clock: a record is expired only after it has been
  observed *unchanged* for a whole `leaseDurationSeconds`. Comparing the holder's `renewTime`
  with the local clock would trust two clocks to agree.
- The holder gives up (fences itself) when it has not renewed successfully for
  `renew_deadline`, which is shorter than the duration. With the holder stopping at
  2/3 of the duration and a contender waiting a full duration from its own observation, the two
  never both believe they hold it, without synchronised clocks.
- Every write carries the resourceVersion it was based on, so of two contenders that saw the
  same empty Lease, the API server lets exactly one win (the other gets 409 Conflict).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    duration_s: int | None
    renew_time: datetime | None
    acquire_time: datetime | None
    transitions: int
    resource_version: str


@dataclass(frozen=True)
class Observation:
    key: tuple[str | None, str, str]
    observed_at: float


@dataclass(frozen=True)
class Timing:
    duration_s: float = 15.0

    @property
    def renew_interval_s(self) -> float:
        return self.duration_s / 3.0

    @property
    def renew_deadline_s(self) -> float:
        return self.duration_s * 2.0 / 3.0

    @property
    def retry_interval_s(self) -> float:
        return max(1.0, self.duration_s / 7.5)


DEFAULT_TIMING = Timing()


def observe(prev: Observation | None, rec: LeaseRecord, now: float) -> Observation:
    """Remember when this exact record was first seen; a renewal or a new holder resets it."""
    key = (rec.holder, str(rec.renew_time), rec.resource_version)
    if prev is not None and prev.key == key:
        return prev
    return Observation(key, now)


Decision = Literal["renew", "acquire", "wait"]


def decide(
    rec: LeaseRecord, me: str, obs: Observation, now: float, default_s: float,
    *, held: bool = True,
) -> Decision:
    """`held`: whether this process holds the Lease now. A record that names `me` although
    this process does not hold it was written by another process with the same identity —
    the pod name is fixed, so a new pod after a forced delete (the old process may still run)
    or a restarted container — and is respected like anyone else's until it expires."""
    if rec.holder == me and held:
        return "renew"
    if not rec.holder:
        return "acquire"
    duration = float(rec.duration_s or default_s)
    if now - obs.observed_at >= duration:
        return "acquire"
    return "wait"


def must_fence(last_renewed: float | None, now: float, timing: Timing) -> bool:
    """True when a holder has gone too long without a successful renewal to keep serving."""
    return last_renewed is None or now - last_renewed >= timing.renew_deadline_s


def micro_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_patch(
    rec: LeaseRecord, me: str, now: datetime, duration_s: int,
    *, taking_over: bool | None = None,
) -> dict[str, Any]:
    """A merge patch that renews (same holder) or takes over the Lease, conditional on the
    resourceVersion it was computed from. `taking_over` defaults to "another holder"; a
    process taking over an expired record of its own name passes True."""
    if taking_over is None:
        taking_over = rec.holder != me
    spec: dict[str, Any] = {
        "holderIdentity": me,
        "leaseDurationSeconds": duration_s,
        "renewTime": micro_time(now),
    }
    if taking_over:
        spec["acquireTime"] = micro_time(now)
        spec["leaseTransitions"] = rec.transitions + (1 if rec.holder else 0)
    return {"metadata": {"resourceVersion": rec.resource_version}, "spec": spec}


def release_patch(rec: LeaseRecord) -> dict[str, Any]:
    """Clear the holder so the next pod can take the Lease at once instead of waiting out the
    duration."""
    return {
        "metadata": {"resourceVersion": rec.resource_version},
        "spec": {"holderIdentity": None, "renewTime": None, "acquireTime": None},
    }
