"""Acting on a bot's one pod: which pod the pass goes by (the watch's, or the one this
operator just created), the fleet-wide restart pace, and the create or delete that
decide.py picked, including stopping the pod of a bot the policy refuses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wabot import naming
from wabot_operator import metrics
from wabot_operator.decide import PodAction, PodDecision, decide_pod
from wabot_operator.kube import Kube, KubeError
from wabot_operator.memory import BotLog, BotMemory, Event, Outcome
from wabot_operator.observe import ObservedPod, newer, observe_pod
from wabot_operator.pacing import SlotPacer
from wabot_operator.policy import Refusal
from wabot_operator.specs.bot import BotRef
from wabot_operator.specs.children import Children
from wabot_operator.status import Problem

# A replacement's slot, taken at the delete, covers the create that follows within this time
# (the old pod's graceful termination).
REPLACEMENT_WINDOW = 120.0
# Why a pod is deleted to be replaced by a new one (decide.py's reasons).
REPLACEMENTS = ("SpecChanged", "PodFailed")
# How long a pod this operator created (or read after a 409) is taken as existing while the
# watch has not shown it yet. Without this, every pass while the watch lags behind (an
# overloaded operator or API server) was a create that met 409 and a read: two requests a
# second per bot, when the API server can least afford them.
UNSEEN_POD_TRUST = 30.0


class PodControl:
    def __init__(self, kube: Kube, restarts: SlotPacer, clock: Callable[[], float]) -> None:
        self.kube = kube
        # One pacer for the whole process: the fleet's re-creations share one pace.
        self.restarts = restarts
        self._clock = clock

    def current(self, pod: Mapping[str, Any] | ObservedPod | None,
                memory: BotMemory) -> ObservedPod | None:
        """The pod to go by: the watch's (raw or already observed), unless this operator
        created or read a newer state of it, or created one the watch has not shown yet."""
        observed = pod if pod is None or isinstance(pod, ObservedPod) else observe_pod(pod)
        mine = memory.pod
        if observed is not None:
            if mine is not None and observed.uid == mine.uid:
                memory.pod_seen = True
            return newer(observed, mine)
        if (mine is not None and not memory.pod_seen
                and self._clock() - memory.pod_at < UNSEEN_POD_TRUST):
            return mine  # created (or read) by this operator, not shown by the watch yet
        return observed

    def restart_slot(self, bot: Mapping[str, Any], ref: BotRef, decision: PodDecision,
                     memory: BotMemory) -> float:
        """Seconds this bot's pod replacement must wait for its fleet-wide start slot.

        Paced: re-creating the pod of a bot that ran before (its status has a phase: a node
        died, its pod was deleted, it was resumed) and replacing a pod whose spec changed or
        that failed (an image roll-out). A replacement takes its slot at the delete, which
        then covers the create that follows. A new bot's first pod goes out at once (creating
        bots is paced by whoever applies them), and stopping a pod (suspend) is never held.
        """
        paced = ((decision.action == PodAction.CREATE
                  and bool((bot.get("status") or {}).get("phase")))
                 or (decision.action == PodAction.DELETE and decision.reason in REPLACEMENTS))
        if not paced:
            self.forget(ref.uid)
            return 0.0
        now = self._clock()
        if (decision.action == PodAction.CREATE and memory.slot_at is not None
                and now - memory.slot_at < REPLACEMENT_WINDOW):
            return 0.0
        wait = self.restarts.wait_for(ref.uid, now)
        if wait == 0.0:
            memory.slot_at = now
        metrics.PODS_WAITING_FOR_RESTART.set(self.restarts.waiting())
        return wait

    def forget(self, uid: str) -> None:
        """The bot no longer waits for a restart slot (and must not stay counted in
        wabot_operator_pod_restarts_waiting)."""
        self.restarts.forget(uid)
        metrics.PODS_WAITING_FOR_RESTART.set(self.restarts.waiting())

    def refuse(self, ref: BotRef, observed: ObservedPod | None, refusal: Refusal,
               outcome: Outcome, log: BotLog) -> ObservedPod | None:
        """A refused bot has no pod: a running one is deleted, saying why."""
        decision = decide_pod(bot_uid=ref.uid, desired_hash=None, observed=observed)
        if decision.action == PodAction.DELETE:
            decision = PodDecision(PodAction.DELETE, refusal.reason,
                                   f"deleting the pod: {refusal.message}")
        observed, _ = self.act(ref, None, decision, observed, outcome, log)
        return observed

    def act(self, ref: BotRef, children: Children | None, decision: PodDecision,
            observed: ObservedPod | None, outcome: Outcome,
            log: BotLog) -> tuple[ObservedPod | None, Problem | None]:
        if decision.action == PodAction.NOTHING:
            if decision.reason == "PodNameTaken":
                return observed, Problem(decision.reason, decision.message)
            return observed, None
        if decision.action == PodAction.WAIT:
            return observed, None
        if decision.action == PodAction.DELETE:
            assert observed is not None
            return self._delete(ref, decision, observed, outcome, log)
        assert children is not None and children.pod is not None
        return self._create(ref, children, outcome, log)

    def _delete(self, ref: BotRef, decision: PodDecision, observed: ObservedPod,
                outcome: Outcome, log: BotLog) -> tuple[ObservedPod | None, Problem | None]:
        name = naming.child_name(ref.name)
        try:
            self.kube.delete("Pod", ref.namespace, name, uid=observed.uid)
        except KubeError as e:
            if not (e.not_found or e.conflict):  # gone already / a different pod now
                outcome.result, outcome.error = "error", str(e)
                return observed, Problem("PodDeleteFailed", str(e))
        follows = ("; its replacement follows once it is gone"
                   if decision.reason in REPLACEMENTS else "")
        outcome.events.append(Event("Normal", "PodDeleted",
                                    f"{decision.message} (graceful delete{follows})"))
        log.info("deleted pod %s: %s", name, decision.reason)
        return observed, None

    def _create(self, ref: BotRef, children: Children, outcome: Outcome,
                log: BotLog) -> tuple[ObservedPod | None, Problem | None]:
        assert children.pod is not None
        name = naming.child_name(ref.name)
        try:
            created = self.kube.create(children.pod)
        except KubeError as e:
            if e.conflict:
                # The watch had not shown it yet, or something else holds the name: look.
                try:
                    current = observe_pod(self.kube.read("Pod", ref.namespace, name))
                except KubeError as read_error:
                    if read_error.not_found:
                        return None, None  # gone in between; next pass creates
                    raise
                again = decide_pod(bot_uid=ref.uid, desired_hash=children.pod_hash,
                                   observed=current)
                if again.reason == "PodNameTaken":
                    return current, Problem(again.reason, again.message)
                return current, None
            outcome.result, outcome.error = "error", str(e)
            outcome.events.append(Event("Warning", "PodRejected", e.message))
            log.warning("pod %s rejected: %s", name, e)
            return None, Problem("PodRejected", e.message)
        outcome.pod_created = f"Pod {name} (spec hash {children.pod_hash})"
        outcome.created.append(outcome.pod_created)
        return observe_pod(created), None
