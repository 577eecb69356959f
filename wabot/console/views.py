"""What a page shows of a WhatsAppBot: plain data and plain words, built from the object the
watch saw. Pure (no I/O), so every tier can serve the same views.

Only what a person needs reaches a page: never the QR payload itself (the page asks for the
rendered image), never a spec field that may name a Secret, a DSN or a webhook key.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

# Messages in/out over the last hour and the webhook's delivery state come from
# status.worker.activity, which each worker writes at most once a minute (never per message).
MESSAGES_NOTE = ("Messages over the last hour of the bot's current worker (they start from zero "
                 "when it restarts); these figures may be up to a minute old.")


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def qr_version(payload: str | None) -> str | None:
    """A short name for the QR payload in force: the page reloads the image when it changes."""
    if not payload:
        return None
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in _get(obj, "status", "conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def row(obj: dict[str, Any]) -> dict[str, Any]:
    """One line of the fleet view."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    worker = status.get("worker") or {}
    account = worker.get("account") or {}
    pairing = worker.get("pairing") or {}
    ready = condition(obj, "Ready")
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "tenant": _get(obj, "spec", "serverName") or "",
        "phase": status.get("phase") or "Unknown",
        "suspended": bool(_get(obj, "spec", "suspend")),
        "account": account.get("jid"),
        "pushName": account.get("pushName"),
        "ready": (ready or {}).get("status", "Unknown"),
        "lastConnected": worker.get("lastConnectedAt"),
        "restarts": int(status.get("restarts") or 0),
        "messagesIn": _int(_get(worker, "activity", "messagesInLastHour")),
        "messagesOut": _int(_get(worker, "activity", "messagesOutLastHour")),
        "state": worker.get("state"),
        "lastError": worker.get("lastError"),
        "pairingMethod": pairing.get("method"),
        "pairingCode": pairing.get("code"),
        "pairingExpires": pairing.get("expiresAt"),
        "qr": qr_version(pairing.get("qr")),
        "summary": summary(obj),
    }


def detail(obj: dict[str, Any]) -> dict[str, Any]:
    """The bot page: the row plus conditions and what is not reported."""
    status = obj.get("status") or {}
    worker = status.get("worker") or {}
    conds = [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
              "message": c.get("message") or "", "since": c.get("lastTransitionTime")}
             for c in status.get("conditions") or [] if isinstance(c, dict)]
    return {**row(obj), "conditions": conds, "pod": status.get("podName"),
            "errorReason": worker.get("errorReason"), "reconnects": worker.get("reconnects"),
            "sessionAction": _session_action(worker.get("sessionAction")),
            "reportedAt": worker.get("updatedAt"), "pairingMode": _get(obj, "spec", "pairing",
                                                                        "method") or "qr",
            "messagesNote": MESSAGES_NOTE, "countingSince": _get(worker, "activity", "since"),
            "webhook": webhook(worker)}


def _int(value: Any) -> int | None:
    """A count the worker reported; None when it has not (an older worker, no report yet)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def webhook(worker: dict[str, Any]) -> dict[str, Any]:
    """The webhook's delivery state in plain words, from status.worker.activity.webhook
    (which never holds the URL, the key or a body)."""
    activity = worker.get("activity")
    if not isinstance(activity, dict):
        return {"state": "unknown", "words": "not reported yet: the worker writes it at most "
                "once a minute", "queueDepth": None, "lastDelivered": None}
    hook = activity.get("webhook")
    if not isinstance(hook, dict):
        return {"state": "none", "words": "no webhook configured", "queueDepth": None,
                "lastDelivered": None}
    failure = str(hook.get("lastFailure") or "")[:64]
    if hook.get("failing"):
        since = _when(hook.get("failingSince"))
        words = f"failing since {since}: {failure}" if since else f"failing: {failure}"
        state = "failing"
    else:
        state, words = "delivering", "delivering"
    return {"state": state, "words": words, "queueDepth": _int(hook.get("queueDepth")),
            "lastDelivered": hook.get("lastDeliveredAt"), "lastFailed": hook.get("lastFailedAt"),
            "lastFailure": failure or None}


def _session_action(raw: Any) -> dict[str, Any] | None:
    """The last session action and how it went (status.worker.sessionAction)."""
    if not isinstance(raw, dict):
        return None
    return {k: raw.get(k) for k in ("requestId", "action", "source", "result", "message", "at")}


def _when(stamp: str | None) -> str:
    if not stamp:
        return ""
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return at.astimezone(UTC).strftime("%H:%M:%S UTC")


def summary(obj: dict[str, Any]) -> str:
    """One sentence on what the bot is doing and what a person should do about it."""
    status = obj.get("status") or {}
    worker = status.get("worker") or {}
    phase = status.get("phase")
    error = worker.get("lastError")
    tail = f"; last error: {error}" if error else ""
    if _get(obj, "spec", "suspend") or phase == "Suspended":
        return ("This bot is suspended: its pod is stopped and its WhatsApp session is kept; "
                "resume it to reconnect.")
    if phase == "Connected":
        jid = _get(worker, "account", "jid")
        return f"Connected to WhatsApp{' as ' + jid if jid else ''}."
    if phase == "Pairing":
        pairing = worker.get("pairing") or {}
        until = _when(pairing.get("expiresAt"))
        before = f" before {until}" if until else ""
        if pairing.get("method") == "code" and pairing.get("code"):
            return (f"Waiting for a phone: type the pairing code {pairing['code']} in WhatsApp "
                    f"(Linked devices, Link with phone number){before}.")
        return ("Waiting for a phone: scan the QR code with WhatsApp (Settings, Linked devices, "
                f"Link a device){before}{tail}.")
    if phase == "LoggedOut":
        return "The phone unlinked this bot: it must be paired again."
    if phase in ("Connecting", "Disconnected"):
        return f"This bot is not connected: it is waiting for WhatsApp{tail}."
    if phase == "Failed":
        degraded = condition(obj, "Degraded") or {}
        why = degraded.get("message") or error or "see the conditions below"
        return f"This bot failed and will not recover on its own: {why}."
    if phase == "Pending":
        ready = condition(obj, "Ready") or {}
        sched = condition(obj, "PodScheduled") or {}
        why = sched.get("message") or ready.get("message") or "its pod is starting"
        return f"This bot is starting: {why}."
    return "No status yet: the operator has not reported on this bot."
