"""The cluster facts a bot's policy check needs (policy.py), read as metadata only and kept a
short while: every pass of every bot checks them, and a namespace's annotation or a Secret's
labels are shared by many bots and change rarely. An admin's change takes effect within
FACTS_TTL seconds, plus the bot's next pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from wabot import naming
from wabot_operator.kube import KubeError
from wabot_operator.policy import Facts, SecretFacts

FACTS_TTL = 30.0
Key = tuple[str, str, str]  # kind, namespace, name


class MetadataReader(Protocol):
    def read_metadata(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...


class FactsCache:
    """Thread-safe (passes run in a pool), and one read per object at a time: when 500 new
    bots' first passes ask for their namespace at once, one pass reads it and the others wait
    for that answer (without this, each pass of the first wave sent its own GET: ~120 more
    requests and ~2 s more apply -> pod p99 for 500 bots at once, bench/). A missing or
    forbidden object is a fact too (the check refuses what it cannot verify); any other failure
    raises KubeError, and the pass is retried like a failed apply."""

    def __init__(self, kube: MetadataReader, clock: Callable[[], float] = time.monotonic,
                 ttl: float = FACTS_TTL) -> None:
        self._kube = kube
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[Key, tuple[float, dict[str, Any] | None]] = {}
        self._reading: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        # One Facts object per distinct answer: every bot keeps the facts its spec was checked
        # against (BotMemory.rendered), and the bots of a namespace almost all share them.
        self._shared: dict[Facts, Facts] = {}

    def _fresh(self, key: Key) -> tuple[bool, dict[str, Any] | None]:
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and self._clock() - hit[0] < self._ttl:
            return True, hit[1]
        return False, None

    def _metadata(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (kind, namespace, name)
        fresh, meta = self._fresh(key)
        if fresh:
            return meta
        with self._lock:
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:  # one pass reads; the others find its answer
            fresh, meta = self._fresh(key)
            if fresh:
                return meta
            now = self._clock()
            try:
                meta = self._kube.read_metadata(kind, namespace, name).get("metadata") or {}
            except KubeError as e:
                if e.status not in (403, 404):
                    raise
                meta = None
            with self._lock:
                self._cache[key] = (now, meta)
                if len(self._cache) > 4096:  # names of long-gone Secrets
                    for stale in [k for k, (t, _) in self._cache.items()
                                  if now - t >= self._ttl]:
                        del self._cache[stale]
                        self._reading.pop(stale, None)
            return meta

    def facts(self, namespace: str, secrets: Iterable[str]) -> Facts:
        ns = self._metadata("Namespace", "", namespace)
        # An unreadable namespace counts as one without the annotation: its own name only.
        tenants = ((ns.get("annotations") or {}).get(naming.ANNOTATION_TENANTS)
                   if ns is not None else None)
        found: list[tuple[str, SecretFacts | None]] = []
        for name in sorted(set(secrets)):
            meta = self._metadata("Secret", namespace, name)
            labels = (meta or {}).get("labels") or {}
            found.append((name, None if meta is None else SecretFacts(
                bot_secret=labels.get(naming.LABEL_BOT_SECRET) == "true",
                tenant=labels.get(naming.LABEL_TENANT))))
        facts = Facts(namespace=namespace, tenants=tenants, secrets=tuple(found))
        if len(self._shared) > 4096:  # answers no bot has any more
            self._shared.clear()
        return self._shared.setdefault(facts, facts)
