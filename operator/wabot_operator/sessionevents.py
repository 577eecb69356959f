"""The Event for a session action (log out, restart, new pairing) a bot's worker reports in
status.worker.sessionAction: posted by the operator, once per request.

Why the operator and not the worker: a bot's Role names only its own objects, and `create`
cannot be limited by name, so letting a worker post Events would let a compromised bot post
Events about any object in its namespace (other tenants' bots included). The operator already
posts Events and already reads the status on every pass.

Once: the Event's name is derived from the request id, so the API server itself refuses a
second one (409) after an operator restart or from a peer; the operator's memory only saves
that request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from wabot.spec import API_GROUP, API_VERSION, KIND
from wabot_operator.kube import Kube, KubeError
from wabot_operator.memory import BotLog, BotMemory
from wabot_operator.status import parse_report

_REASONS = {"logout": "SessionLoggedOut", "restart": "SessionRestarted",
            "pairing": "SessionPairingRequested"}


def event_name(bot: str, request_id: str) -> str:
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:16]
    return f"{bot}.session-{digest}"


def session_action_event(bot: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """The Event for the bot's reported session action, or None (none, or still Started)."""
    report = parse_report(bot.get("status"))
    action = report.session_action if report is not None else None
    if action is None or action.result == "Started":
        return None
    meta = bot["metadata"]
    ok = action.result == "Succeeded"
    reason = _REASONS[action.action] if ok else f"SessionAction{action.result}"
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name(meta["name"], action.request_id),
                     "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                           "name": meta["name"], "namespace": meta["namespace"],
                           "uid": meta.get("uid")},
        "type": "Normal" if ok else "Warning",
        "reason": reason,
        "message": (f"{action.action} (request {action.request_id[:64]}, from "
                    f"{action.source}): {action.message or action.result}")[:1024],
        "source": {"component": "wabot-operator"},
        "reportingComponent": "wabot.io/operator",
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def announce_session_action(kube: Kube, bot: Mapping[str, Any], memory: BotMemory,
                            log: BotLog, now: datetime) -> None:
    event = session_action_event(bot, now)
    if event is None:
        return
    request = event["metadata"]["name"]
    if memory.session_action_announced == request:
        return
    try:
        kube.create(event)
    except KubeError as e:
        if not e.conflict:
            log.warning("could not post the session action's Event: %s", e)
            return
    memory.session_action_announced = request
    log.info("session action %s", event["message"])
