"""What the worker tells others about its own state: the status report it publishes (with the
session's last action and the media store's use), the `connection`, `session.status` and
`pairing` webhook events of a connection change, and its uptime for the `info` command.
worker.py decides when; this module decides what they say.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from wabot.specread import dump
from wabot.states import WorkerState
from wabot.status_view import (
    ActivityStatus,
    MediaStorageStatus,
    WebhookDeliveryStatus,
    WorkerReport,
)

from ..adapters.webhooks import WebhookDispatcher
from ..core import account_events
from ..core import lifecycle as lc
from ..core.activity import Summary
from .session_control import SessionControl


def uptime(seconds: float) -> str:
    """"1d 2h 3m 4s", the largest units only once they are reached."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if d or h:
        parts.append(f"{h}h")
    parts.append(f"{m}m {s}s")
    return " ".join(parts)


def _at(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None


def activity_status(summary: Summary) -> ActivityStatus:
    """status.worker.activity from the worker's counts and its webhook's delivery state."""
    hook = summary.webhook
    return ActivityStatus(
        messages_in_last_hour=summary.messages_in, messages_out_last_hour=summary.messages_out,
        since=datetime.fromtimestamp(summary.since, UTC),
        webhook=None if hook is None else WebhookDeliveryStatus(
            queue_depth=hook.queue_depth, failing=hook.failing,
            failing_since=_at(hook.failing_since),
            last_delivered_at=_at(hook.last_delivered_at),
            last_failed_at=_at(hook.last_failed_at), last_failure=hook.last_failure),
    )


def status_report(report: WorkerReport, session: SessionControl | None,
                  media: MediaStorageStatus | None,
                  activity: Summary | None = None) -> WorkerReport:
    """The connection's report with what the session, the media store and the bot's recent
    activity add to it."""
    if session is not None and session.last is not None:
        report = replace(report, session_action=session.last)
    if media is not None:
        report = replace(report, media=media)
    if activity is not None:
        report = replace(report, activity=activity_status(activity))
    if session is not None and session.exiting and report.state is WorkerState.STOPPED:
        # Ending to re-pair in a fresh process: LoggedOut until that one reports.
        report = replace(report, state=WorkerState.LOGGED_OUT)
    return report


def emit_connection_change(webhooks: WebhookDispatcher, session: SessionControl,
                           before: lc.ConnState, after: lc.ConnState) -> None:
    """On the connection's control thread: queue the `connection`, `session.status` and
    `pairing` events the change means, for the events the tenant subscribed to."""
    if after.state is not before.state and webhooks.wants("session.status"):
        action = session.last
        webhooks.emit("session.status", account_events.session_status(
            before, after, dump(action) if action else None))
    if after.state is not before.state and webhooks.wants("connection"):
        from wabot.event_view import ConnectionData  # an event: its models load now

        webhooks.emit("connection", ConnectionData(
            state=after.state.value, previous_state=before.state.value,
            last_error=after.last_error,
            account=after.account.jid if after.account is not None else None,
        ))
    pairing = after.pairing
    if pairing is not None and pairing != before.pairing and webhooks.wants("pairing"):
        from wabot.event_view import PairingData

        expires = datetime.fromtimestamp(pairing.expires_at, UTC)
        if pairing.method == "qr":
            data = PairingData(method="qr", qr=pairing.payload, expires_at=expires)
        else:
            data = PairingData(method="code", code=pairing.payload, expires_at=expires)
        webhooks.emit("pairing", data)
