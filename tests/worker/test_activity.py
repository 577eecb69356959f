"""status.worker.activity as the console reads it: messages in/out over the last hour and the
webhook's delivery state, from real neonize messages through the real dispatcher and a real
webhook receiver on 127.0.0.1 that fails, then answers. Written on a period, never per
message."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wabot.spec import WhatsAppBotSpec, WorkerReport
from wabot.specread import dump

from .conftest import Harness, wait_for
from .receiver import Receiver
from .test_connection import Reports
from .test_webhooks import FAST, KEY, hook_spec

Make = Callable[..., Harness]
TOKEN = "activity-api-token-0123456789"
LIMITS = {"rateLimit": {"perChatPerMinute": 600, "perBotPerMinute": 6000}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(KEY.encode()).start()
    yield r
    r.stop()


def _activity(reports: Reports) -> list[WorkerReport]:
    with reports._lock:
        return [r for r in reports.items if r.activity is not None]


def _session(h: Harness) -> dict[str, Any]:
    assert h.worker.http is not None
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}/v1/session",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def test_100_messages_are_counted_in_a_few_writes_not_100(make_worker: Make) -> None:
    reports = Reports()
    period = 2.0
    h = make_worker(WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-a", "botId": "bot-a", **LIMITS}),
        reporter=reports, activity_period_s=period)
    before = len(reports.items)
    started = time.monotonic()
    for i in range(100):
        h.say("!ping", chat=f"1555000{i % 10:04d}")
    wait_for(lambda: len(h.client.sent) == 100, timeout=30, what="100 replies")
    wait_for(lambda: (reports.last.activity is not None
                      and reports.last.activity.messages_in_last_hour == 100
                      and reports.last.activity.messages_out_last_hour == 100),
             timeout=period * 3 + 5, what="a report counting 100 in and 100 out")
    elapsed = time.monotonic() - started
    writes = len(reports.items) - before
    # One write per period at most (plus the one already due when the burst began).
    assert writes <= elapsed / period + 2, (writes, elapsed)
    assert writes < 10
    # Quiet again: nothing changed, nothing more is written.
    settled = len(reports.items)
    time.sleep(period * 1.5)
    assert len(reports.items) == settled
    act = reports.last.activity
    assert act is not None and act.webhook is None  # no spec.webhook: nothing to show


def test_a_failing_then_answering_webhook_is_in_the_status_and_the_session_api(
        make_worker: Make, receiver: Receiver) -> None:
    reports = Reports()
    receiver.status = 503
    h = make_worker(hook_spec(receiver.url, ["message"], **LIMITS), reporter=reports,
                    activity_period_s=0.3, env={**FAST, "WABOT_API_TOKEN": TOKEN})
    h.say("hello")
    h.say("there", chat="15550002222")
    wait_for(lambda: len(receiver.deliveries) >= 2, what="failed attempts")

    def failing() -> bool:
        hook = reports.last.activity.webhook if reports.last.activity else None
        return hook is not None and hook.failing and hook.queue_depth == 2

    wait_for(failing, what="a report of the failing webhook")
    act = reports.last.activity
    assert act is not None and act.webhook is not None
    assert act.messages_in_last_hour == 2 and act.messages_out_last_hour == 0
    assert act.webhook.last_failure == "HTTP 503"
    assert act.webhook.failing_since is not None and act.webhook.last_delivered_at is None
    published = json.dumps(dump(act))
    assert KEY not in published and str(receiver.port) not in published
    assert "hooks" not in published
    # The fleet tiers read the same figures from the worker's session API.
    view = _session(h)["activity"]
    assert view["webhook"]["failing"] is True and view["webhook"]["queueDepth"] == 2
    assert view["messagesInLastHour"] == 2

    receiver.status = 200
    wait_for(lambda: len(receiver.accepted()) >= 2, what="both events delivered")

    def delivering() -> bool:
        hook = reports.last.activity.webhook if reports.last.activity else None
        return hook is not None and not hook.failing and hook.queue_depth == 0

    wait_for(delivering, what="a report of the recovered webhook")
    hook = reports.last.activity.webhook if reports.last.activity else None
    assert hook is not None and hook.last_delivered_at is not None
    assert hook.failing_since is None and hook.last_failure == "HTTP 503"  # kept as history
    assert _session(h)["activity"]["webhook"]["failing"] is False
    assert len(_activity(reports)) < 40  # 0.3 s period over a few seconds, never per attempt


def test_a_pod_without_the_lease_writes_no_activity(make_worker: Make) -> None:
    """A standby pod (or one that lost the Lease) must not overwrite the active pod's report
    with its own counts."""
    from botworker.core import lifecycle as lc

    reports = Reports()
    h = make_worker(reporter=reports, activity_period_s=0.2)
    h.worker.connection.post(lc.LeaseLost("taken over"))
    assert h.worker.connection.sync()
    wait_for(lambda: not h.worker.connection.state.lease_held, what="the Lease lost")
    for _ in range(5):
        h.say("hello")
    h.settle()
    assert h.worker.metrics.activity.last_hour(time.time())[0] == 5  # counted all the same
    time.sleep(1.0)  # five periods
    assert all(r.activity is None or r.activity.messages_in_last_hour == 0
               for r in reports.items)
