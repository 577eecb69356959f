"""What the worker tells others about its own state: the status report it publishes (with the
session's last action and the media store's use), the `connection`, `session.status` and
`pairing` webhook events of a connection change, and its uptime for the `info` command.
worker.py decides when; this module decides what they say.
"""

from __future__ import annotations

from datetime import UTC, datetime

from wabot.events import ConnectionData, PairingData
from wabot.status import MediaStorageStatus, WorkerReport, WorkerState

from ..adapters.webhooks import WebhookDispatcher
from ..core import account_events
from ..core import lifecycle as lc
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


def status_report(report: WorkerReport, session: SessionControl | None,
                  media: MediaStorageStatus | None) -> WorkerReport:
    """The connection's report with what the session and the media store add to it."""
    if session is not None and session.last is not None:
        report = report.model_copy(update={"session_action": session.last})
    if media is not None:
        report = report.model_copy(update={"media": media})
    if session is not None and session.exiting and report.state is WorkerState.STOPPED:
        # Ending to re-pair in a fresh process: LoggedOut until that one reports.
        report = report.model_copy(update={"state": WorkerState.LOGGED_OUT})
    return report


def emit_connection_change(webhooks: WebhookDispatcher, session: SessionControl,
                           before: lc.ConnState, after: lc.ConnState) -> None:
    """On the connection's control thread: queue the `connection`, `session.status` and
    `pairing` events the change means, for the events the tenant subscribed to."""
    if after.state is not before.state and webhooks.wants("session.status"):
        action = session.last
        webhooks.emit("session.status", account_events.session_status(
            before, after, action.model_dump(mode="json", by_alias=True) if action else None))
    if after.state is not before.state and webhooks.wants("connection"):
        webhooks.emit("connection", ConnectionData(
            state=after.state.value, previous_state=before.state.value,
            last_error=after.last_error,
            account=after.account.jid if after.account is not None else None,
        ))
    pairing = after.pairing
    if pairing is not None and pairing != before.pairing and webhooks.wants("pairing"):
        expires = datetime.fromtimestamp(pairing.expires_at, UTC)
        if pairing.method == "qr":
            data = PairingData(method="qr", qr=pairing.payload, expires_at=expires)
        else:
            data = PairingData(method="code", code=pairing.payload, expires_at=expires)
        webhooks.emit("pairing", data)
