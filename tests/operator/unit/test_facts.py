"""The policy facts' cache: metadata read once per object while fresh, once at a time when many
passes ask together (a burst of new bots in one namespace), missing and forbidden objects as
facts, other errors raised."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from wabot_operator.facts import FACTS_TTL, FactsCache
from wabot_operator.kube import KubeError


class SlowReader:
    """Answers after a pause, counting every read, as a loaded API server would."""

    def __init__(self, answers: dict[tuple[str, str], Any], pause: float = 0.2) -> None:
        self.answers = answers
        self.pause = pause
        self.reads: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def read_metadata(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            self.reads.append((kind, namespace, name))
        time.sleep(self.pause)
        answer = self.answers.get((kind, name))
        if isinstance(answer, KubeError):
            raise answer
        if answer is None:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        return {"metadata": answer}


def test_a_burst_of_passes_reads_the_namespace_once() -> None:
    reader = SlowReader({("Namespace", "team"): {"annotations": {"wabot.io/tenants": "acme"}}})
    cache = FactsCache(reader)
    with ThreadPoolExecutor(16) as pool:
        facts = list(pool.map(lambda _: cache.facts("team", []), range(64)))
    assert {f.tenants for f in facts} == {"acme"}
    assert reader.reads == [("Namespace", "", "team")]


def test_facts_are_read_again_once_stale() -> None:
    now = [0.0]
    reader = SlowReader({("Namespace", "team"): {}, ("Secret", "db"): {
        "labels": {"wabot.io/bot-secret": "true", "wabot.io/tenant": "acme"}}}, pause=0)
    cache = FactsCache(reader, clock=lambda: now[0])
    first = cache.facts("team", ["db", "gone"])
    assert first.tenants is None
    secret = first.secret("db")
    assert secret is not None and secret.bot_secret and secret.tenant == "acme"
    assert first.secret("gone") is None  # missing is a fact: refused by the policy
    cache.facts("team", ["db", "gone"])
    assert len(reader.reads) == 3
    now[0] += FACTS_TTL
    cache.facts("team", ["db", "gone"])
    assert len(reader.reads) == 6


def test_forbidden_is_a_fact_and_other_errors_raise() -> None:
    reader = SlowReader({("Namespace", "team"): KubeError(403, "Forbidden", "no"),
                         ("Namespace", "down"): KubeError(503, "ServiceUnavailable", "x")},
                        pause=0)
    cache = FactsCache(reader)
    assert cache.facts("team", []).tenants is None  # as if without the annotation
    with pytest.raises(KubeError):
        cache.facts("down", [])
