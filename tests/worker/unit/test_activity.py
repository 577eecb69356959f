"""The bot's activity summary (botworker/core/activity.py): the rolling hour of messages, the
webhook's delivery record, and the gate that keeps status writes to one per period."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from botworker.core.activity import (
    ActivityGate,
    DeliveryRecord,
    MessageCounts,
    Summary,
    short_reason,
)
from botworker.runtime.state_events import activity_status
from wabot.specread import dump  # activity_status is the worker's pydantic-free status_view
from wabot.status import WorkerReport

T0 = 1_700_000_000.0  # a minute boundary is irrelevant: buckets are whole minutes of epoch


def test_counts_cover_the_last_hour_and_forget_older_minutes() -> None:
    c = MessageCounts(T0)
    c.count_in(T0)
    c.count_in(T0 + 30, 2)
    c.count_out(T0 + 30)
    assert c.last_hour(T0 + 31) == (3, 1)
    c.count_in(T0 + 1800)
    assert c.last_hour(T0 + 1800) == (4, 1)
    # 61 minutes on, the first minute's messages are out of the window, the later one is not.
    assert c.last_hour(T0 + 61 * 60) == (1, 0)
    assert c.last_hour(T0 + 2 * 3600) == (0, 0)


def test_counts_keep_no_more_than_an_hour_of_buckets() -> None:
    c = MessageCounts(T0)
    for minute in range(500):  # a busy day: memory stays bounded
        c.count_in(T0 + minute * 60)
    assert len(c._buckets) <= 61
    assert c.last_hour(T0 + 499 * 60) == (60, 0)


def test_the_delivery_record_says_since_when_it_fails() -> None:
    r = DeliveryRecord()
    assert r.snapshot(0).failing is False
    r.failed(T0, "HTTP 503")
    r.failed(T0 + 10, "HTTP 502")
    d = r.snapshot(4)
    assert (d.failing, d.failing_since, d.last_failed_at, d.last_failure, d.queue_depth) == (
        True, T0, T0 + 10, "HTTP 502", 4)
    r.delivered(T0 + 20)
    d = r.snapshot(0)
    assert not d.failing and d.last_delivered_at == T0 + 20 and d.last_failure == "HTTP 502"


@pytest.mark.parametrize(("detail", "shown"), [
    ("HTTP 503", "HTTP 503"),
    ("HTTP 404", "HTTP 404"),
    ("the webhook receiver could not be reached, or its address is not allowed", "unreachable"),
    ("HTTP https://hooks.example/x?key=secret", "unreachable"),
])
def test_a_failure_reason_carries_no_url(detail: str, shown: str) -> None:
    assert short_reason(detail) == shown


def test_the_gate_writes_a_change_at_most_once_per_period() -> None:
    gate = ActivityGate(60.0)
    quiet = Summary(0, 0, T0, None)
    assert gate.due(quiet, T0)  # nothing written yet
    gate.written(quiet, T0)
    assert not gate.due(quiet, T0 + 600)  # unchanged: never
    busy = Summary(100, 100, T0, None)
    assert not gate.due(busy, T0 + 30)  # changed, but the last write is recent
    assert gate.due(busy, T0 + 60)
    gate.written(busy, T0 + 60)
    assert not gate.due(busy, T0 + 500)


def test_the_status_shape() -> None:
    hook = DeliveryRecord()
    hook.failed(T0, "HTTP 503")
    status = activity_status(Summary(12, 7, T0, hook.snapshot(3)))
    report = WorkerReport.model_validate({"state": "Connected", "updatedAt": "2026-01-01T00:00:00Z",
                                          "activity": dump(status)})
    dumped = report.model_dump(mode="json", by_alias=True)["activity"]
    assert dumped == {
        "messagesInLastHour": 12, "messagesOutLastHour": 7,
        "since": datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z"),
        "webhook": {"queueDepth": 3, "failing": True,
                    "failingSince": datetime.fromtimestamp(T0, UTC).isoformat()
                    .replace("+00:00", "Z"),
                    "lastDeliveredAt": None,
                    "lastFailedAt": datetime.fromtimestamp(T0, UTC).isoformat()
                    .replace("+00:00", "Z"),
                    "lastFailure": "HTTP 503"}}
    assert activity_status(Summary(0, 0, T0, None)).webhook is None
    with pytest.raises(ValidationError):
        WorkerReport.model_validate({"state": "Connected", "updatedAt": "2026-01-01T00:00:00Z",
                                     "activity": {"messagesInLastHour": -1,
                                                  "messagesOutLastHour": 0, "since": "x"}})
