"""status.worker.activity on a clock, never per message: one daemon thread looks every few
seconds and has the worker publish its report when the summary (messages in/out over the
last hour, the webhook's delivery state) changed and the last write is at least `period_s`
old. Only a worker with a status reporter (Kubernetes) runs it; the fleet tiers read the same
summary on demand from GET /v1/session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..adapters.webhooks import WebhookDispatcher
from ..core.activity import ActivityGate, MessageCounts, Summary
from ..logs import get_logger

log = get_logger("activity")

PERIOD_S = 60.0  # at most one activity write a minute per bot (1,000 bots: ~17 patches/s)
LOOK_S = 10.0  # how often the thread compares (cheap: no I/O unless a write is due)


class ActivityReport:
    def __init__(self, counts: MessageCounts, webhooks: WebhookDispatcher,
                 publish: Callable[[], None], period_s: float = PERIOD_S,
                 clock: Callable[[], float] = time.time,
                 speaks: Callable[[], bool] = lambda: True) -> None:
        """`publish()`: the worker publishes its whole report, which calls `written`.
        `speaks()`: whether this process is the bot's (holds the Lease); a standby pod's
        periodic writes would overwrite the active one's report."""
        self._speaks = speaks
        self._counts = counts
        self._webhooks = webhooks
        self._publish = publish
        self._clock = clock
        self._gate = ActivityGate(period_s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Summary:
        """The summary as of now (also what GET /v1/session shows)."""
        now = self._clock()
        messages_in, messages_out = self._counts.last_hour(now)
        return Summary(messages_in, messages_out, self._counts.since, self._webhooks.delivery())

    def written(self, summary: Summary) -> None:
        with self._lock:
            self._gate.written(summary, self._clock())

    def check(self) -> bool:
        """Publish if due; True when it did."""
        if not self._speaks():
            return False
        summary = self.current()
        with self._lock:
            due = self._gate.due(summary, self._clock())
        if due:
            self._publish()
        return due

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="activity-report", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        look = max(0.05, min(self._gate.period_s, LOOK_S))
        while not self._stop.wait(look):
            try:
                self.check()
            except Exception:  # the report is a nicety: never let it end the thread
                log.exception("activity report failed")
