"""The one decision that keeps a bot to one WhatsApp session: what to do with its pod.

Pure: desired state + what was observed → one action. The apply layer performs it and the
next pass observes the result. Two properties make "exactly one pod" hold whatever the order
of events (missed watch events, a restarted operator, a second replica that was not paused):

* the pod has a fixed name, so a CREATE while any pod of that name exists fails with 409;
* a replacement is DELETE now, CREATE in a later pass once the old pod is observed gone;
  a terminating pod is waited for, never force-deleted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wabot_operator.observe import ObservedPod


class PodAction(enum.StrEnum):
    NOTHING = "Nothing"
    CREATE = "Create"
    DELETE = "Delete"  # graceful, with the observed uid as precondition
    WAIT = "Wait"  # a pod is terminating: look again soon, create only once it is gone


@dataclass(frozen=True)
class PodDecision:
    action: PodAction
    reason: str  # CamelCase, used in Events and conditions
    message: str


def decide_pod(*, bot_uid: str, desired_hash: str | None,
               observed: ObservedPod | None) -> PodDecision:
    """`desired_hash` None means no pod is wanted (suspended)."""
    if observed is None:
        if desired_hash is None:
            return PodDecision(PodAction.NOTHING, "Suspended", "no pod while suspended")
        return PodDecision(PodAction.CREATE, "PodMissing", "creating the bot's pod")
    if observed.terminating:
        return PodDecision(PodAction.WAIT, "PodTerminating",
                           f"waiting for pod {observed.name} to terminate")
    if not observed.managed:
        # Someone else's pod holds the name. Not ours to delete; nothing can run until it goes.
        return PodDecision(PodAction.NOTHING, "PodNameTaken",
                           f"pod {observed.name} exists and is not managed by wabot")
    if observed.owner_uid != bot_uid:
        return PodDecision(PodAction.DELETE, "StalePod",
                           f"pod {observed.name} belongs to an earlier bot of the same name")
    if desired_hash is None:
        return PodDecision(PodAction.DELETE, "Suspended", "deleting the pod: bot suspended")
    if observed.phase in ("Failed", "Succeeded"):
        why = observed.status_reason or observed.phase
        return PodDecision(PodAction.DELETE, "PodFailed",
                           f"replacing pod {observed.name}: {why}"
                           + (f" ({observed.status_message})" if observed.status_message else ""))
    if observed.spec_hash != desired_hash:
        return PodDecision(PodAction.DELETE, "SpecChanged",
                           f"replacing pod {observed.name}: pod spec changed "
                           f"({observed.spec_hash} -> {desired_hash})")
    return PodDecision(PodAction.NOTHING, "UpToDate", "pod is up to date")
