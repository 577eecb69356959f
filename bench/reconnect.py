"""Reconnect attempts of a fleet of workers: a SIMULATION, not a measurement.

Workers cannot run on kwok's simulated nodes and WhatsApp is unreachable here, so this drives
the worker's own connection rulebook - `botworker.core.lifecycle.transition` with its default
policy - for N workers on a virtual clock. It is the same pure function the worker's control
thread applies; what is modelled is only what the outside world does: when each worker gets
its Lease (its start time), how long a dial takes and whether it succeeds. The control thread
is modelled as waking exactly at `next_wakeup()` (the real loop wakes at that time or within
1 s).

The policy (botworker.core.lifecycle.Policy explains each number): every worker of a restart starts
with a linked session on its volume, so it is `resuming`: its first dial is drawn uniformly
within 20 s of the Lease, and until it has connected once a failed dial is retried after
[150, 300] s (the cap stage of the equal-jitter backoff). A connected bot that drops retries
after [0.5, 1] s, then [1, 2] s, ... up to [150, 300] s. A new bot dials at once.

Start times, in this order: the pods' Running times of the fleet restart measured in the same
`python -m bench` run; else those stored in bench/results.json by an earlier run; else a
modelled paced restart (one pod every 0.25 s: the operator's default of 4 re-creations/s).

Scenarios:
- `restart_reachable`: workers start at those times and WhatsApp answers: one dial each.
- `restart_outage`: the same starts, but WhatsApp is unreachable for the whole horizon: every
  dial fails after `dial_s` and is retried with backoff.
- `simultaneous_outage`: all N (resuming) start at the same instant, WhatsApp unreachable: the
  worst case, not a paced restart; only the start-up jitter spreads it.
- `whatif_previous_outage`: WHAT-IF, not the worker's behaviour: `restart_outage` under the
  policy before the resume rules (first dial at once, full jitter from 1 s for every worker),
  for a comparison in the same run.

Reported: attempts per second (peak over any 1-second window, peak over 10-second windows,
mean over the horizon) and how many attempts each worker made.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import BENCH, Result, at_most, peak_rate

HORIZON_S = 600.0
DIAL_FAIL_S = 0.01  # measured here: "no such host" comes back in milliseconds
# The operator's default pace of pod re-creations (WABOT_OPERATOR_POD_RESTARTS_PER_SECOND).
PACED_RESTARTS_PER_S = 3.0
STORED_RESULTS = BENCH / "results.json"


def previous_policy() -> Any:
    """The rulebook's policy before the resume rules: first dial at once, full jitter from 1 s
    (floor 0.5 s, cap 300 s) for every worker."""
    from botworker.core import lifecycle as lc
    from botworker.core.backoff import BackoffPolicy

    return dataclasses.replace(lc.DEFAULT_POLICY, backoff=BackoffPolicy(),
                               resume_jitter_s=0.0, resume_at_cap=False)


def simulate(starts: Sequence[float], *, reachable: bool, horizon_s: float = HORIZON_S,
             dial_s: float = DIAL_FAIL_S, seed: int = 7, policy: Any = None,
             resuming: bool = True) -> list[float]:
    """The times of every dial (StartSession action) of every worker. `resuming`: the workers
    start with a linked session on their volume (a restart; False: new bots)."""
    from botworker.core import lifecycle as lc

    rng = random.Random(seed)
    policy = policy or lc.DEFAULT_POLICY
    states: list[Any] = [lc.ConnState(resuming=resuming) for _ in starts]
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


def stored_restart_starts(path: Path | None = STORED_RESULTS) -> list[float] | None:
    """The pods' Running times of the fleet restart in an earlier run's results.json (the
    image roll-out first, as `python -m bench` picks them), or None."""
    if path is None or not path.exists():
        return None
    try:
        results = json.loads(path.read_text()).get("results", [])
    except (OSError, ValueError):
        return None
    for res in results:
        if res.get("bench") != "restart":
            continue
        for kind in ("new_image", "pods_deleted"):
            times = (res.get("extra", {}).get(kind) or {}).get("pod_running_times_s")
            if times:
                return [float(t) for t in times]
    return None


def paced_starts(n: int, per_s: float = PACED_RESTARTS_PER_S) -> list[float]:
    return [i / per_s for i in range(n)]


def run(n: int = 1000, starts: Sequence[float] | None = None,
        horizon_s: float = HORIZON_S, stored: Path | None = STORED_RESULTS) -> Result:
    from botworker.core.lifecycle import DEFAULT_POLICY as policy

    res = Result("reconnect", f"Reconnect attempts of {n} workers (simulation)")
    b = policy.backoff
    res.note("SIMULATION: botworker.core.lifecycle.transition (the worker's real rulebook, default "
             f"policy) for {n} restarted workers on a virtual clock, {horizon_s:.0f} s; dials "
             f"fail after {DIAL_FAIL_S * 1000:.0f} ms when WhatsApp is unreachable. Policy: a "
             "worker with a linked session on its volume (a restart) dials U(0, "
             f"{policy.resume_jitter_s:g} s) after its Lease and, until it has connected once, "
             f"retries a failed dial after [{b.at_cap(0.0):g}, {b.at_cap(1.0):g}] s; after a drop "
             f"a bot retries with {b.jitter}-jitter backoff base {b.base_s:g} s, cap "
             f"{b.cap_s:g} s, floor {b.min_s:g} s; a new bot dials at once.")
    prev = previous_policy().backoff
    res.note("Expected delays (mean): first dial of a new bot 0 s (before: 0 s); first dial of a "
             f"restarted bot {policy.resume_jitter_s / 2:g} s after the Lease (before: 0 s); first "
             f"retry after a drop {b.expected(1):.2f} s (before: {prev.expected(1):.3f} s); "
             f"first retry of a restarted bot that never connected {b.at_cap(0.5):g} s "
             f"(before: {prev.expected(1):.3f} s).")
    measured = list(starts or [])
    if len(measured) < n:
        stored_starts = stored_restart_starts(stored) or []
        if len(stored_starts) >= n:
            measured = stored_starts
            res.note(f"Start times: when each new pod became Running in the fleet restart "
                     f"stored in {stored} (not measured in this run).")
    elif starts:
        res.note("Start times: when each new pod became Running in the measured fleet restart.")
    if len(measured) >= n:
        base = min(measured)
        starts_used = sorted(t - base for t in measured)[:n]
    else:
        starts_used = paced_starts(n)
        res.note(f"Start times: no measured fleet restart; modelled as one pod every "
                 f"{1 / PACED_RESTARTS_PER_S:g} s (the operator's default pace).")
    scenarios: dict[str, tuple[Sequence[float], bool, Any]] = {
        "restart_reachable": (starts_used, True, None),
        "restart_outage": (starts_used, False, None),
        "simultaneous_outage": ([0.0] * n, False, None),
        "whatif_previous_outage": (starts_used, False, previous_policy()),
    }
    out: dict[str, Any] = {}
    for name, (st, reachable, pol) in scenarios.items():
        out[name] = summarize(simulate(st, reachable=reachable, horizon_s=horizon_s,
                                       policy=pol), n, horizon_s)
    res.extra.update(out)
    res.extra["starts_spread_s"] = (max(starts_used) - min(starts_used)) if starts_used else 0
    labels = {"restart_reachable": "restart, WhatsApp reachable",
              "restart_outage": "restart during a WhatsApp outage",
              "simultaneous_outage": "all start at once, WhatsApp unreachable",
              "whatif_previous_outage": ("WHAT-IF previous policy (first dial at once, full "
                                         "jitter from 1 s): restart during a WhatsApp outage")}
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
