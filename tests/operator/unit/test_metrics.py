"""The wabot_bots gauge: bots by the phase last written, kept from the truth per bot."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge
from wabot_operator.metrics import PhaseBook

from wabot.spec import Phase


def gauge_values(gauge: Gauge) -> dict[str, float]:
    return {s.labels["phase"]: s.value for m in gauge.collect() for s in m.samples}


def test_the_gauge_counts_each_bot_once_in_its_latest_phase() -> None:
    gauge = Gauge("test_bots", "bots by phase", ["phase"], registry=CollectorRegistry())
    book = PhaseBook(gauge)
    book.set("ns", "a", Phase.PENDING)
    book.set("ns", "a", Phase.PENDING)  # a pass that changed nothing
    book.set("ns", "b", Phase.PENDING)
    book.set("other", "a", Phase.CONNECTING)  # same name, another namespace: another bot
    assert gauge_values(gauge)["Pending"] == 2 and gauge_values(gauge)["Connecting"] == 1
    book.set("ns", "a", Phase.CONNECTED)
    values = gauge_values(gauge)
    assert (values["Pending"], values["Connecting"], values["Connected"]) == (1, 1, 1)
    book.forget("ns", "b")
    book.forget("ns", "gone")  # never seen: nothing to take back
    values = gauge_values(gauge)
    assert (values["Pending"], values["Connected"], len(book)) == (0, 1, 2)
    assert sum(values.values()) == len(book)
