"""Pure status derivation: spec + generation + pod + worker report → the operator's part of
`status` (phase, KEP-1623 conditions, observedGeneration, podName, restarts).

`phase` is for humans and printer columns; automation reads the conditions. A condition's
lastTransitionTime moves only when its status moves, so "Connected since" stays meaningful
across the many passes that change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from wabot.spec import Condition, Phase, WhatsAppBotStatus, WorkerReport, WorkerState
from wabot.status import WORKER_PHASES
from wabot_operator.observe import ObservedPod

READY = "Ready"
PAIRED = "Paired"
CONNECTED = "Connected"
POD_SCHEDULED = "PodScheduled"
DEGRADED = "Degraded"
CONDITION_TYPES = (READY, PAIRED, CONNECTED, POD_SCHEDULED, DEGRADED)

# The operator's fields of status; status.worker belongs to the worker.
OPERATOR_FIELDS = ("phase", "conditions", "observedGeneration", "podName", "restarts")



@dataclass(frozen=True)
class Problem:
    """Something the reconcile pass could not do, reported as Degraded=True.

    `fatal` problems (the spec itself is unusable) also make the phase Failed."""

    reason: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class _Cond:
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""


def fresh_report(report: WorkerReport | None, pod: ObservedPod | None) -> WorkerReport | None:
    """The worker's report if it describes the current pod: a report written before the pod
    started comes from its predecessor (the pod name is fixed, so only time tells)."""
    if report is None or pod is None or pod.phase != "Running" or pod.terminating:
        return None
    if pod.started_at is not None and report.updated_at < pod.started_at:
        return None
    return report


def derive_phase(*, suspended: bool, pod: ObservedPod | None, report: WorkerReport | None,
                 problem: Problem | None) -> Phase:
    if problem is not None and problem.fatal:
        return Phase.FAILED
    if suspended:
        return Phase.SUSPENDED
    if pod is None or pod.terminating:
        return Phase.PENDING
    if pod.phase in ("Failed", "Succeeded") or pod.crash_looping:
        return Phase.FAILED
    if pod.phase != "Running":
        return Phase.PENDING
    fresh = fresh_report(report, pod)
    if fresh is None:
        return Phase.CONNECTING
    if fresh.error_reason:
        return Phase.FAILED  # the worker's configuration stops it (e.g. InvalidProxy)
    return WORKER_PHASES.get(fresh.state, Phase.CONNECTING)


def _pod_scheduled(suspended: bool, pod: ObservedPod | None) -> _Cond:
    if pod is None:
        if suspended:
            return _Cond("False", "Suspended", "the bot is suspended: no pod")
        return _Cond("False", "NoPod", "the bot's pod does not exist yet")
    if pod.scheduled is True:
        return _Cond("True", "Scheduled", f"pod {pod.name} is on node {pod.node_name or '?'}")
    if pod.scheduled is False:
        return _Cond("False", pod.scheduled_reason or "Unschedulable",
                     pod.scheduled_message or "")
    return _Cond("False", "Pending", f"pod {pod.name} is waiting for the scheduler")


def _connected(suspended: bool, pod: ObservedPod | None, fresh: WorkerReport | None) -> _Cond:
    if suspended:
        return _Cond("False", "Suspended", "the bot is suspended")
    if fresh is None:
        if pod is None or pod.phase != "Running":
            return _Cond("False", "PodNotRunning", "the bot's pod is not running")
        return _Cond("Unknown", "NoWorkerReport", "the worker has not reported yet")
    if fresh.state == WorkerState.CONNECTED:
        return _Cond("True", "Connected", "the WhatsApp session is connected")
    return _Cond("False", fresh.error_reason or fresh.state.value, fresh.last_error or "")


def _paired(report: WorkerReport | None) -> _Cond:
    """Pairing outlives pods (the session is on the PVC), so any report counts, fresh or not."""
    if report is None:
        return _Cond("Unknown", "NoWorkerReport", "the worker has not reported yet")
    if report.state == WorkerState.LOGGED_OUT:
        return _Cond("False", "LoggedOut", "the phone unlinked the session; pair again")
    if report.account is not None:
        who = report.account.jid
        if report.account.push_name:
            who += f" ({report.account.push_name})"
        return _Cond("True", "Paired", f"linked to {who}")
    if report.state == WorkerState.PAIRING:
        return _Cond("False", "AwaitingPairing",
                     "scan the QR code or type the pairing code from status.worker.pairing")
    return _Cond("False", "NotPaired", "no WhatsApp account is linked yet")


def _degraded(pod: ObservedPod | None, problem: Problem | None,
              fresh: WorkerReport | None = None) -> _Cond:
    if problem is not None:
        return _Cond("True", problem.reason, problem.message)
    if fresh is not None and fresh.error_reason:
        # A configuration problem the worker found (e.g. InvalidProxy): it will not connect
        # until a human fixes the spec or its Secret.
        return _Cond("True", fresh.error_reason, fresh.last_error or fresh.error_reason)
    if fresh is not None and fresh.media is not None and fresh.media.full:
        # The bot runs and keeps its session; received files are not kept until there is room.
        reason = fresh.media.reason or "MediaStorageFull"
        return _Cond("True", f"Media{reason}" if not reason.startswith("Media") else reason,
                     "received media cannot be stored (spec.media): messages are delivered "
                     "without their files until the volume has room")
    if pod is not None and not pod.terminating:
        if pod.phase == "Failed":
            return _Cond("True", "PodFailed",
                         " ".join(filter(None, [pod.status_reason, pod.status_message]))
                         or f"pod {pod.name} failed")
        if pod.stuck_reason is not None:
            return _Cond("True", pod.stuck_reason, pod.waiting_message or "")
    return _Cond("False", "AsExpected", "")


def _ready(phase: Phase, pod: ObservedPod | None) -> _Cond:
    if phase == Phase.CONNECTED:
        if pod is not None and pod.ready:
            return _Cond("True", "Connected", "the bot is connected and serving")
        return _Cond("False", "PodNotReady", "connected, but the pod is not ready")
    return _Cond("False", phase.value, f"the bot is {phase.value}")


def derive_status(
    *,
    generation: int,
    suspended: bool,
    pod: ObservedPod | None,
    report: WorkerReport | None,
    problem: Problem | None,
    previous: Sequence[Condition],
    now: datetime,
) -> WhatsAppBotStatus:
    """The operator's fields of status (`worker` is left None: not the operator's to write)."""
    fresh = fresh_report(report, pod)
    phase = derive_phase(suspended=suspended, pod=pod, report=report, problem=problem)
    computed = {
        READY: _ready(phase, pod),
        PAIRED: _paired(report),
        CONNECTED: _connected(suspended, pod, fresh),
        POD_SCHEDULED: _pod_scheduled(suspended, pod),
        DEGRADED: _degraded(pod, problem, fresh),
    }
    before = {c.type: c for c in previous}
    conditions = []
    for kind, c in computed.items():
        old = before.get(kind)
        since = old.last_transition_time if old is not None and old.status == c.status else now
        conditions.append(Condition(
            type=kind, status=c.status, reason=_camel(c.reason), message=c.message[:32768],
            last_transition_time=since, observed_generation=generation,
        ))
    return WhatsAppBotStatus(
        phase=phase,
        conditions=conditions,
        observed_generation=generation,
        pod_name=pod.name if pod is not None else None,
        restarts=pod.restarts if pod is not None else 0,
    )


def _camel(reason: str) -> str:
    """Condition reasons must match ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ (metav1); the
    reasons used here already do, this only guards against a surprising pod or API reason."""
    cleaned = "".join(ch for ch in reason if ch.isascii() and (ch.isalnum() or ch in "_,:"))
    cleaned = cleaned.rstrip(",:")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "Reason" + cleaned
    return cleaned


def status_patch(status: WhatsAppBotStatus) -> dict[str, Any]:
    """A JSON merge patch of the operator's fields only; None removes a field."""
    dumped = status.model_dump(mode="json", by_alias=True)
    return {"status": {k: dumped.get(k) for k in OPERATOR_FIELDS}}


def current_operator_status(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The operator's fields as they are now, shaped like `status_patch` output (normalised
    through the model when they parse), so equality means "nothing to write"."""
    mine = {k: v for k, v in (status or {}).items() if k in OPERATOR_FIELDS}
    try:
        return status_patch(WhatsAppBotStatus.model_validate(mine))
    except ValueError:
        return {"status": {k: mine.get(k) for k in OPERATOR_FIELDS}}


def parse_conditions(status: Mapping[str, Any] | None) -> list[Condition]:
    out = []
    for raw in (status or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(raw))
        except ValueError:
            continue  # a hand-edited condition is replaced, not fatal
    return out


def parse_report(status: Mapping[str, Any] | None) -> WorkerReport | None:
    raw = (status or {}).get("worker")
    if not raw:
        return None
    try:
        return WorkerReport.model_validate(raw)
    except ValueError:
        return None
