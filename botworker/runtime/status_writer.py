"""Every status write of the worker goes through one object, so that no write drops a part
another one added: the connection's report is completed with the session's last action, the
media store's use and the bot's activity (runtime/state_events.py says what each holds) and
handed to the status reporter. Without a reporter (the fleet tiers, which serve the same
summary on GET /v1/session) nothing is written and the activity clock does not run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wabot.status_view import MediaStorageStatus, WorkerReport

from ..adapters.webhooks import WebhookDispatcher
from ..core.activity import MessageCounts
from .activity_report import PERIOD_S, ActivityReport
from .session_control import SessionControl
from .state_events import status_report


class StatusWriter:
    def __init__(self, reporter: Any | None, counts: MessageCounts,
                 webhooks: WebhookDispatcher, report: Callable[[], WorkerReport], *,
                 period_s: float = PERIOD_S, speaks: Callable[[], bool] = lambda: True) -> None:
        """`reporter`: anything with publish/start/flush/stop (adapters/bot_object.py's
        StatusReporter on a cluster), None for none. `report()`: the connection's report as
        of now. `speaks()`: whether this process holds the bot's Lease (only then does the
        activity clock write)."""
        self.reporter = reporter
        self._report = report
        self.activity = ActivityReport(counts, webhooks, self.publish_now, period_s,
                                       speaks=speaks)
        # The parts built after this object; None until the worker has them.
        self.session: SessionControl | None = None
        self.media: Callable[[], MediaStorageStatus | None] | None = None

    def publish(self, report: WorkerReport) -> None:
        if self.reporter is None:
            return
        activity = self.activity.current()
        self.reporter.publish(status_report(
            report, self.session, self.media() if self.media is not None else None, activity))
        self.activity.written(activity)

    def publish_now(self) -> None:
        self.publish(self._report())

    def start(self) -> None:
        """Replace whatever the previous pod reported, even while this one waits for the Lease
        (a wait that publishes nothing else), then start the activity clock."""
        if self.reporter is None:
            return
        self.reporter.start()
        self.publish_now()
        self.activity.start()

    def stop(self, flush_s: float) -> None:
        """Stop the clock and write what is queued, for at most `flush_s`."""
        self.activity.stop()
        if self.reporter is not None:
            self.reporter.flush(flush_s)
            self.reporter.stop()
