"""Reconnect attempts of a fleet of workers: a SIMULATION, not a measurement.

Workers cannot run on kwok's simulated nodes and WhatsApp is unreachable here, so this drives
the worker's own connection rulebook - `botworker.lifecycle.transition` with its default
policy (the capped, fully jittered `botworker.backoff.BackoffPolicy`) - for N workers on a
virtual clock. It is the same pure function the worker's control thread applies; what is
modelled is only what the outside world does: when each worker gets its Lease (its start
time), how long a dial takes and whether it succeeds. The control thread is modelled as waking
exactly at `next_wakeup()` (the real loop wakes at that time or within 1 s).

Scenarios:
- `restart_reachable`: workers start at the times the new pods became Running in the measured
  fleet restart (or all at t=0 when none were measured) and WhatsApp answers: one dial each.
- `restart_outage`: the same starts, but WhatsApp is unreachable for the whole horizon: every
  dial fails after `dial_s` and is retried with backoff.
- `simultaneous_outage`: all N start at the same instant, WhatsApp unreachable (worst case).

Reported: attempts per second (peak over any 1-second window, peak over 10-second windows,
mean over the horizon) and how many attempts each worker made.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from typing import Any

from bench.common import Result, at_most, peak_rate

HORIZON_S = 600.0
DIAL_FAIL_S = 0.01  # measured here: "no such host" comes back in milliseconds


def simulate(starts: Sequence[float], *, reachable: bool, horizon_s: float = HORIZON_S,
             dial_s: float = DIAL_FAIL_S, seed: int = 7, policy: Any = None) -> list[float]:
    """The times of every dial (StartSession action) of every worker."""
    from botworker import lifecycle as lc

    rng = random.Random(seed)
    policy = policy or lc.DEFAULT_POLICY
    states: list[Any] = [lc.ConnState() for _ in starts]
    queue: list[tuple[float, int, int, Any]] = []
    seq = 0

    def push(t: float, worker: int, ev: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (t, seq, worker, ev))

    for i, t in enumerate(starts):
        push(t, i, lc.LeaseAcquired())
    dials: list[float] = []
    wakeups: list[float | None] = [None] * len(starts)
    while queue:
        now, _, i, ev = heapq.heappop(queue)
        if now > horizon_s:
            break
        if isinstance(ev, lc.Tick) and wakeups[i] != now:
            continue  # a stale wake-up; a newer one is scheduled
        state, actions = lc.transition(states[i], ev, now, rng.random(), policy)
        states[i] = state
        for action in actions:
            if isinstance(action, lc.StartSession):
                dials.append(now)
                if reachable:
                    push(now + dial_s, i, lc.Connected(None))
                else:
                    push(now + dial_s, i, lc.SessionEnded("failed to dial (simulated)"))
        wake = state.next_wakeup()
        if wake is not None and wake != wakeups[i]:
            wakeups[i] = wake
            push(max(wake, now), i, lc.Tick())
    return dials


def summarize(dials: Sequence[float], n: int, horizon_s: float) -> dict[str, Any]:
    if not dials:
        return {"attempts": 0}
    first = min(dials)
    return {
        "attempts": len(dials),
        "per_worker": len(dials) / n,
        "peak_per_s_1s": peak_rate(dials, 1.0),
        "peak_per_s_10s": peak_rate(dials, 10.0),
        "mean_per_s": len(dials) / max(1.0, horizon_s - first),
        "after_60s_peak_per_s_10s": peak_rate([d for d in dials if d >= first + 60], 10.0),
    }


def run(n: int = 1000, starts: Sequence[float] | None = None,
        horizon_s: float = HORIZON_S) -> Result:
    from botworker.lifecycle import DEFAULT_POLICY

    res = Result("reconnect", f"Reconnect attempts of {n} workers (simulation)")
    b = DEFAULT_POLICY.backoff
    res.note("SIMULATION: botworker.lifecycle.transition (the worker's real rulebook, default "
             f"policy: full-jitter backoff base {b.base_s} s, cap {b.cap_s} s, floor {b.min_s} s)"
             f" for {n} workers on a virtual clock, {horizon_s:.0f} s; dials fail after "
             f"{DIAL_FAIL_S * 1000:.0f} ms when WhatsApp is unreachable. The first dial follows "
             "the Lease at once (no start-up jitter in the rulebook).")
    measured = list(starts or [])
    if len(measured) >= n:
        base = min(measured)
        starts_used = sorted(t - base for t in measured)[:n]
        res.note("Start times: when each new pod became Running in the measured fleet restart "
                 "(a worker dials as soon as it holds its Lease).")
    else:
        starts_used = [0.0] * n
        res.note("Start times: no measured fleet restart in this run; all workers start at 0.")
    scenarios = {
        "restart_reachable": (starts_used, True),
        "restart_outage": (starts_used, False),
        "simultaneous_outage": ([0.0] * n, False),
    }
    out: dict[str, Any] = {}
    for name, (st, reachable) in scenarios.items():
        out[name] = summarize(simulate(st, reachable=reachable, horizon_s=horizon_s), n,
                              horizon_s)
    # WHAT-IF (not the worker's behaviour): what spreading it would take. Each worker's first
    # dial delayed by U(0, 300 s) and a backoff base of 30 s instead of 1 s.
    import dataclasses

    from botworker.lifecycle import DEFAULT_POLICY as policy

    slow = dataclasses.replace(policy, backoff=dataclasses.replace(policy.backoff, base_s=30.0))
    rng = random.Random(11)
    spread = [rng.uniform(0.0, 300.0) for _ in range(n)]
    out["whatif_spread_outage"] = summarize(
        simulate(spread, reachable=False, horizon_s=horizon_s, policy=slow), n, horizon_s)
    res.extra.update(out)
    res.extra["starts_spread_s"] = (max(starts_used) - min(starts_used)) if starts_used else 0
    labels = {"restart_reachable": "restart, WhatsApp reachable",
              "restart_outage": "restart during a WhatsApp outage",
              "simultaneous_outage": "all start at once, WhatsApp unreachable"}
    labels["whatif_spread_outage"] = ("WHAT-IF first dial delayed U(0,300 s), backoff base "
                                      "30 s, WhatsApp unreachable")
    for name, label in labels.items():
        s = out[name]
        real = not name.startswith("whatif")
        target = "<= 20/s" if real else None

        def met(v: float | None, real: bool = real) -> bool | None:
            return at_most(v, 20.0) if real else None

        res.add(f"{label}: dials peak (1 s window)", s.get("peak_per_s_1s"), "dials/s",
                target=target, met=met(s.get("peak_per_s_1s")),
                note=f"{s.get('attempts')} dials, {s.get('per_worker', 0):.1f} per worker")
        res.add(f"{label}: dials peak (10 s window)", s.get("peak_per_s_10s"), "dials/s",
                target=target, met=met(s.get("peak_per_s_10s")))
        res.add(f"{label}: dials mean over {horizon_s:.0f} s", s.get("mean_per_s"), "dials/s")
        if name != "restart_reachable":
            res.add(f"{label}: dials peak after the first minute (10 s window)",
                    s.get("after_60s_peak_per_s_10s"), "dials/s", target=target,
                    met=met(s.get("after_60s_peak_per_s_10s")))
    return res
