"""The account's parts of a worker, built together (worker.py calls `build` once): session
control, the account's events, the operations on groups, contacts and presence, and the API
routes that serve them. Kept out of the composition root so it stays readable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wabot.httproutes import Route
from wabot.spec_view import SettingsSpec
from wabot.status_view import ActivityStatus

from ..config import WorkerConfig
from ..core.ratelimit import RateLimiter
from ..metrics import Metrics
from .account_calls import AccountCalls
from .account_events import AccountEvents
from .account_ops import OpMetrics
from .connection import ConnectionManager
from .contacts_api import ContactsApi
from .groups_api import GroupsApi
from .session_api import SessionApi
from .session_control import SessionControl


@dataclass
class AccountParts:
    ops: OpMetrics
    session: SessionControl
    events: AccountEvents
    calls: AccountCalls

    def routes(self, connection: ConnectionManager, pod_name: str | None,
               activity: Callable[[], ActivityStatus | None] = lambda: None) -> list[Route]:
        return [*SessionApi(self.session, lambda: connection.state, pod_name,
                            activity).routes(),
                *GroupsApi(self.calls).routes(), *ContactsApi(self.calls).routes()]


def build(cfg: WorkerConfig, client: Any, connection: ConnectionManager, *, metrics: Metrics,
          webhooks: Any, limiter: RateLimiter, settings: Callable[[], SettingsSpec],
          reject_call: Callable[[Any], bool], publish: Callable[[], None],
          request_exit: Callable[[int], None]) -> AccountParts:
    """Also registers the account's neonize handlers with the connection's event table."""
    ops = OpMetrics(metrics)
    session = SessionControl(cfg, client, connection, ops=ops, publish=publish,
                             request_exit=request_exit)
    events = AccountEvents(webhooks, settings=settings, reject_call=reject_call,
                           own_user=connection.own_user, ops=ops)
    connection.events.more = events.handlers()
    calls = AccountCalls(client, limiter=limiter, ops=ops, ready=connection.can_send,
                         state=lambda: connection.state.state.value,
                         own_user=connection.own_user)
    return AccountParts(ops, session, events, calls)
