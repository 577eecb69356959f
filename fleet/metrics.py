"""The fleet's own metrics, and federation of its units' metrics into one scrape.

A monolith is one scrape target for Prometheus, so /metrics serves the supervisor's series
(restarts per bot, bots per state) followed by every bot's own /metrics, merged family by
family (a text exposition may declare each family once) with `bot` and `server_name` added
where a series lacks them (the process_* series). A bot that does not answer within the
timeout is left out of that scrape and `wabot_fleet_scrape_up{bot=...}` says so.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .policy import State
from .supervisor import UnitStatus


class UnitCollector(Collector):
    """Series derived from the supervisor's status at scrape time (nothing to keep in sync)."""

    def __init__(self, status: Callable[[], Sequence[UnitStatus]], kind: str,
                 label_keys: Sequence[str],
                 scrape_up: Callable[[], Mapping[str, bool]] | None = None) -> None:
        self._status = status
        self._kind = kind  # "bot" or "group"
        self._keys = list(label_keys)
        self._scrape_up = scrape_up

    def _values(self, st: UnitStatus) -> list[str]:
        return [st.labels.get(k, st.name if k == self._kind else "") for k in self._keys]

    def collect(self) -> Iterator[Metric]:
        units = self._status()
        k = self._kind
        restarts = CounterMetricFamily(
            f"wabot_fleet_{k}_restarts", f"Restarts of a {k}'s process (crashes, liveness "
            "failures and requested restarts)", labels=self._keys)
        up = GaugeMetricFamily(f"wabot_fleet_{k}_up",
                               f"1 while the {k}'s process runs and answers /livez",
                               labels=self._keys)
        exit_code = GaugeMetricFamily(
            f"wabot_fleet_{k}_last_exit_code",
            f"Exit code of the {k}'s previous process (negative: killed by that signal)",
            labels=self._keys)
        states = GaugeMetricFamily(f"wabot_fleet_{k}s", f"{k.capitalize()}s by supervisor state",
                                   labels=["state"])
        counts = dict.fromkeys((s.value for s in State), 0)
        for st in units:
            values = self._values(st)
            restarts.add_metric(values, st.restarts)
            up.add_metric(values, 1.0 if st.state is State.RUNNING and st.live else 0.0)
            if st.last_exit_code is not None:
                exit_code.add_metric(values, st.last_exit_code)
            counts[st.state.value] += 1
        for state, n in counts.items():
            states.add_metric([state], n)
        yield from (restarts, up, exit_code, states)
        if self._scrape_up is not None:
            scraped = GaugeMetricFamily("wabot_fleet_scrape_up",
                                        f"1 when the {k}'s /metrics answered in this scrape",
                                        labels=[k])
            for name, ok in sorted(self._scrape_up().items()):
                scraped.add_metric([name], 1.0 if ok else 0.0)
            yield scraped


class _Static(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_expositions(parts: Iterable[tuple[Mapping[str, str], str]]) -> list[Metric]:
    """Merge text expositions into one family list; each part's labels are added to its
    series where the series does not carry that label already."""
    families: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for extra, text in parts:
        for fam in text_string_to_metric_families(text):
            merged = families.get(fam.name)
            if merged is None:
                merged = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                families[fam.name] = merged
            for s in fam.samples:
                labels = {**{k: v for k, v in extra.items() if k not in s.labels}, **s.labels}
                key = (s.name, tuple(sorted(labels.items())))
                if key in seen:  # the same series twice would make the scrape invalid
                    continue
                seen.add(key)
                merged.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
    return list(families.values())


def render(collectors: Iterable[Collector], federated: Iterable[Metric] = ()) -> bytes:
    """One exposition: a family the fleet itself reports and its units report too (e.g. a
    group's `wabot_fleet_scrape_up`) is declared once, with all the samples."""
    families: dict[str, Metric] = {}
    for fam in [m for c in collectors for m in c.collect()] + list(federated):
        merged = families.get(fam.name)
        if merged is None:
            merged = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            families[fam.name] = merged
        known = {(s.name, tuple(sorted(s.labels.items()))) for s in merged.samples}
        merged.samples.extend(s for s in fam.samples
                              if (s.name, tuple(sorted(s.labels.items()))) not in known)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(families.values()))
    return generate_latest(registry)


def fetch_text(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> str | None:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if int(resp.status) != 200:
                return None
            return bytes(resp.read()).decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def scrape_all(targets: Sequence[tuple[str, str, Mapping[str, str]]], timeout: float,
               headers: Mapping[str, str] | None = None
               ) -> tuple[list[tuple[Mapping[str, str], str]], dict[str, bool]]:
    """Fetch (name, url, labels) targets in parallel; returns the texts and who answered."""
    if not targets:
        return [], {}
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        texts = list(pool.map(lambda t: fetch_text(t[1], timeout, headers), targets))
    parts: list[tuple[Mapping[str, str], str]] = []
    up: dict[str, bool] = {}
    for (name, _url, labels), text in zip(targets, texts, strict=True):
        up[name] = text is not None
        if text is not None:
            try:
                list(text_string_to_metric_families(text))  # a garbled page is left out
            except ValueError:
                up[name] = False
                continue
            parts.append((labels, text))
    return parts, up
