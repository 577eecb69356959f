"""What the operator knows about a bot's pod, read from a raw Pod object once, so the pure
decision and status functions take a small typed value instead of poking at dicts."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wabot import naming
from wabot.spec import KIND

# Container waiting reasons that will not fix themselves without a change from someone.
STUCK_WAITING_REASONS = frozenset({
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
})


@dataclass(frozen=True, slots=True)
class ObservedPod:
    """Kept for every bot's pod (PodBook) while it exists: slots, and its words (phase,
    reasons, node) shared between pods rather than held once per pod from each watch event."""

    name: str
    uid: str
    owner_uid: str | None  # uid of the controlling WhatsAppBot, if any
    managed: bool  # carries the wabot.io/bot label: one of ours, possibly from an older bot
    spec_hash: str | None
    phase: str | None  # Pending, Running, Succeeded, Failed, Unknown
    terminating: bool
    restarts: int = 0
    ready: bool = False
    scheduled: bool | None = None  # None: no PodScheduled condition yet
    scheduled_reason: str | None = None
    scheduled_message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    status_reason: str | None = None  # e.g. Evicted
    status_message: str | None = None
    started_at: datetime | None = None
    node_name: str | None = None
    resource_version: str | None = None

    @property
    def crash_looping(self) -> bool:
        return self.waiting_reason == "CrashLoopBackOff"

    @property
    def stuck_reason(self) -> str | None:
        return self.waiting_reason if self.waiting_reason in STUCK_WAITING_REASONS else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _word(value: Any) -> Any:
    """One copy of a string that many pods carry (a phase, a reason, a node's name)."""
    return sys.intern(value) if isinstance(value, str) else value


def observe_pod(pod: Mapping[str, Any]) -> ObservedPod:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    owner_uid = None
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND:
            owner_uid = ref.get("uid")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled")
    ready = conditions.get("Ready")
    restarts = 0
    waiting_reason = waiting_message = None
    for cs in status.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount") or 0)
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting_reason is None:
            waiting_reason = waiting.get("reason")
            waiting_message = waiting.get("message")
    return ObservedPod(
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        owner_uid=owner_uid,
        managed=naming.LABEL_BOT in (meta.get("labels") or {}),
        spec_hash=(meta.get("annotations") or {}).get(naming.ANNOTATION_POD_HASH),
        phase=_word(status.get("phase")),
        terminating=meta.get("deletionTimestamp") is not None,
        restarts=restarts,
        ready=bool(ready and ready.get("status") == "True"),
        scheduled=None if scheduled is None else scheduled.get("status") == "True",
        scheduled_reason=_word(scheduled.get("reason")) if scheduled else None,
        scheduled_message=scheduled.get("message") if scheduled else None,
        waiting_reason=_word(waiting_reason),
        waiting_message=waiting_message,
        status_reason=_word(status.get("reason")),
        status_message=status.get("message"),
        started_at=_time(status.get("startTime")) or _time(meta.get("creationTimestamp")),
        node_name=_word((pod.get("spec") or {}).get("nodeName")),
        resource_version=meta.get("resourceVersion"),
    )


def newer(a: ObservedPod | None, b: ObservedPod | None) -> ObservedPod | None:
    """The more recent of two views of a bot's pod, by resourceVersion (the API server's are
    etcd revisions, ordered across objects); `a` when they cannot be compared."""
    if a is None or b is None or a.resource_version is None or b.resource_version is None:
        return a if a is not None else b
    try:
        return b if int(b.resource_version) > int(a.resource_version) else a
    except ValueError:
        return a
