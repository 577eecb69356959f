"""The bots' supporting objects as the API server holds them, read with one LIST per kind and
namespace instead of one GET per object: the periodic re-check of every bot (and the first
check after an operator restart) costs a handful of requests for the whole fleet, not six per
bot. At 1,000 bots the GETs alone were ~27 requests a second, and a restarted operator read
6,000 objects at once.

Only what drift detection reads is kept (`drift.essentials`). The API-token Secret is not
listed: the operator may not list Secrets (only get and create them, by name).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from wabot import naming
from wabot_operator.drift import essentials

# The kinds a check reads from a snapshot (the Pod comes from the operator's watch).
KINDS = ("PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "Lease")


class Lister(Protocol):
    def list_all(self, kind: str, namespace: str,
                 label_selector: str) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # clock time just before the first LIST: everything older is in it
    objects: Mapping[tuple[str, str], dict[str, Any]]  # (kind, name) -> essentials

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))


class Inventory:
    """One snapshot per namespace, taken again only when a caller needs one newer than the
    current. Thread-safe: passes run in a pool; one of them lists, the others wait for it."""

    def __init__(self, kube: Lister, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._clock = clock
        self._snapshots: dict[str, Snapshot] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def snapshot(self, namespace: str, newer_than: float) -> Snapshot:
        """A snapshot of `namespace` taken after `newer_than` (clock time): the current one,
        or a new one. Raises KubeError when a LIST fails."""
        with self._guard:
            lock = self._locks.setdefault(namespace, threading.Lock())
        with lock:
            current = self._snapshots.get(namespace)
            if current is not None and current.taken_at > newer_than:
                return current
            taken_at = self._clock()
            objects = {(kind, item["metadata"]["name"]): essentials(kind, item)
                       for kind in KINDS
                       for item in self._kube.list_all(kind, namespace, naming.LABEL_BOT)}
            current = Snapshot(taken_at, objects)
            self._snapshots[namespace] = current
            return current
