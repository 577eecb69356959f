"""The chaos test's share of bots on the real node (devcluster/node.py): a few bots whose pods a
real kubelet runs with the real worker image, beside the many that kwok simulates.

For those bots nothing stands in: the worker itself takes and releases the bot's Lease, and a
deleted pod means SIGTERM to a real process. What is counted for them is what really runs:
`WorkerSampler` reads the node's processes (their cgroups, as tests/realnode does) throughout
the run and keeps, per bot, the most worker containers alive at one moment.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from devcluster.node import RealNode
from tests.realnode.helpers import worker_containers
from tests.realnode.plugin import PLACEMENT
from wabot import naming

SAMPLE_EVERY_S = 0.05


def pick_real_bots(names: list[str], n: int, rng: random.Random) -> list[str]:
    """The seeded share of `names` placed on the real node (in name order)."""
    return sorted(rng.sample(names, min(n, len(names))))


def bot_spec(spec: dict[str, Any], on_real_node: bool) -> dict[str, Any]:
    """`spec` with the real node's placement (its selector, toleration and storage class)
    merged in when asked."""
    if not on_real_node:
        return spec
    storage = {**spec.get("storage", {}), **PLACEMENT["storage"]}  # type: ignore[dict-item]
    return {**spec, **PLACEMENT, "storage": storage}


@dataclass
class WorkerSampler:
    """Samples the real node's worker containers per bot of one namespace, in a thread."""

    node: RealNode
    namespace: str
    samples: int = 0
    most: Counter[str] = field(default_factory=Counter)  # bot -> most containers at once
    seen: dict[str, set[str]] = field(default_factory=dict)  # bot -> every container
    doubles: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    last: dict[str, set[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> WorkerSampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="worker-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = worker_containers(self.node, self.namespace)
            self.samples += 1
            for bot, containers in now.items():
                self.most[bot] = max(self.most[bot], len(containers))
                self.seen.setdefault(bot, set()).update(containers)
                if len(containers) > 1 and len(self.doubles) < 20:
                    self.doubles.append((time.monotonic(), bot, tuple(sorted(containers))))
            self.last = now
            self._stop.wait(SAMPLE_EVERY_S)


def real_lease_settled(coord: client.CoordinationV1Api, core: client.CoreV1Api, ns: str,
                       bot: str, suspended: bool, sampler: WorkerSampler) -> bool:
    """The real worker of a running bot holds its Lease (renewed within its duration) and is
    the only one of the bot's workers on the node; a suspended bot has none there."""
    containers = sampler.last.get(bot, set())
    if suspended:
        return not containers
    if len(containers) != 1:
        return False
    name = naming.child_name(bot)
    pod = core.read_namespaced_pod(name, ns, _request_timeout=10)
    statuses = pod.status.container_statuses or [] if pod.status else []
    if pod.metadata.deletion_timestamp or not statuses or not statuses[0].state.running:
        return False
    spec = coord.read_namespaced_lease(name, ns, _request_timeout=10).spec
    if spec.holder_identity != name or spec.renew_time is None:
        return False
    age = (datetime.now(UTC) - spec.renew_time).total_seconds()
    return age < float(spec.lease_duration_seconds or 15)


def restarts(pod: client.V1Pod | None) -> int:
    """The worker container's restarts (a crash, an OOM kill, a failed liveness probe)."""
    statuses = (pod.status.container_statuses if pod and pod.status else None) or []
    return sum(int(cs.restart_count or 0) for cs in statuses)


def per_round(rounds: list[list[str]], real: set[str]) -> str:
    """How many of each round's bots ran on the real node, as a distribution."""
    counts = Counter(sum(1 for b in bots if b in real) for bots in rounds if bots)
    picks = sum(len(bots) for bots in rounds)
    on_real = sum(1 for bots in rounds for b in bots if b in real)
    dist = ", ".join(f"{k} in {counts[k]}" for k in sorted(counts))
    return (f"{on_real} of {picks} bots acted on in {len(rounds)} rounds ran there "
            f"(rounds by bots there: {dist}; rounds without bot picks not counted)")
