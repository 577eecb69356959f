"""Watchers for the real node's tests: every state a bot's pod containers and its Lease went
through, as the API server reported them (a poll could miss a release that lasts a moment)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from devcluster import cgroups
from devcluster.node import RealNode
from wabot.workerenv import BOT_NAME, NAMESPACE


@dataclass
class Recorder:
    """Watches one object kind in a namespace (by field selector) in a thread; `seen` holds
    every object version, in order."""

    api_client: client.ApiClient
    namespace: str
    kind: str  # "pod" or "lease"
    name: str
    seen: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _list(self) -> Any:
        selector = f"metadata.name={self.name}"
        if self.kind == "pod":
            return client.CoreV1Api(self.api_client).list_namespaced_pod, selector
        return client.CoordinationV1Api(self.api_client).list_namespaced_lease, selector

    def _run(self) -> None:
        try:
            fn, selector = self._list()
            listed = fn(self.namespace, field_selector=selector)
            self.seen.extend(listed.items)
            rv = listed.metadata.resource_version
            self._ready.set()
            while not self._stop.is_set():
                w = watch.Watch()
                for ev in w.stream(fn, self.namespace, field_selector=selector,
                                   resource_version=rv, timeout_seconds=2):
                    if ev["type"] == "ERROR":
                        raise AssertionError(f"watch error: {ev['raw_object']}")
                    rv = ev["object"].metadata.resource_version
                    self.seen.append(ev["object"])
                    if self._stop.is_set():
                        w.stop()
        except BaseException as e:  # reported to the test through .error
            self.error = e
            self._ready.set()

    def holders(self) -> list[str | None]:
        """A Lease's holders in order, repeats collapsed."""
        out: list[str | None] = []
        for lease in self.seen:
            holder = lease.spec.holder_identity or None
            if not out or out[-1] != holder:
                out.append(holder)
        return out

    def exit_codes(self) -> dict[str, int]:
        """Pod uid -> the worker container's exit code, for every pod seen terminated."""
        out: dict[str, int] = {}
        for pod in self.seen:
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                if cs.state and cs.state.terminated is not None:
                    out[pod.metadata.uid] = cs.state.terminated.exit_code
        return out


def worker_containers(node: RealNode, namespace: str) -> dict[str, set[str]]:
    """Bot name -> the memory cgroups (one per container) of the node's processes running that
    bot's worker in `namespace`: what really runs, read from the kernel, not from pod
    objects (a pod object can be gone while its container still stops, or the reverse). A
    process that has exited between the reads is not counted: the kernel moves an exiting task
    to the root cgroup (its line then reads "/"), outside the node's pods."""
    found: dict[str, set[str]] = {}
    pods = f"/{node.cgroup}/kubepods/"
    want_ns = f"{NAMESPACE}={namespace}".encode()
    prefix = f"{BOT_NAME}=".encode()
    for pid in cgroups.pids(node.cgroup):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if want_ns not in env:
                continue
            bot = next((v[len(prefix):].decode() for v in env if v.startswith(prefix)), None)
            if bot is None:
                continue
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                path = line.split(":", 2)[2]
                if ":memory:" in line and path.startswith(pods):
                    found.setdefault(bot, set()).add(path)
        except OSError:
            continue
    return found
