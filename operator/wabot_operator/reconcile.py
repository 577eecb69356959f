"""One level-based pass over one bot: render, make the supporting objects exist, take the pod
action the decision function picked, write the operator's part of status.

Synchronous on purpose (the kopf layer runs it in a thread): it is a straight sequence of API
calls whose every decision comes from the pure modules (specs/, drift, decide, status).
Nothing here remembers more than "when did I last check the supporting objects", so a
restarted operator converges from whatever it finds.

`Reconciler` coordinates the steps; each step's I/O lives in its own module: apply.py (the
supporting objects and the API-token Secret), podcontrol.py (the pod and the restart pace),
statuswrite.py (status and the Events for it); memory.py holds what a pass carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from wabot import naming
from wabot.spec import WhatsAppBotSpec
from wabot_operator.apply import Applier, after_pod, before_pod
from wabot_operator.config import OperatorConfig
from wabot_operator.decide import PodAction, PodDecision, decide_pod
from wabot_operator.facts import FactsCache
from wabot_operator.identities import IdentityBook
from wabot_operator.inventory import Inventory, Snapshot
from wabot_operator.kube import Kube, KubeError
from wabot_operator.memory import BotLog, BotMemory, Event, Outcome, bot_log
from wabot_operator.observe import ObservedPod
from wabot_operator.pacing import SlotPacer
from wabot_operator.podcontrol import REPLACEMENT_WINDOW, REPLACEMENTS, PodControl
from wabot_operator.policy import Facts, Refusal, secret_refs
from wabot_operator.policy import check as check_policy
from wabot_operator.sessionevents import announce_session_action
from wabot_operator.specs.bot import BotRef, RenderDefaults, ServiceAccountRef
from wabot_operator.specs.children import Children, render_children
from wabot_operator.status import Problem
from wabot_operator.statuswrite import PENDING_WRITE_PACE, StatusWriter
from wabot_operator.templates import TemplateError, Templates, TemplateStore

# How soon to look again while something is in motion (a pod terminating, a pod just created).
FAST_REQUEUE = 1.0
# How soon a pass that failed (an API error, a refused pod, a failed status write) is tried
# again, when nothing wakes the bot first; capped by the reconcile interval. Not at once: a
# refused pod (quota, admission) or an unavailable API server would be hammered.
RETRY_AFTER_ERROR = 10.0


@dataclass
class _Pass:
    """What the steps of one pass over one bot share."""

    bot: Mapping[str, Any]
    ref: BotRef
    generation: int
    log: BotLog
    memory: BotMemory
    outcome: Outcome
    observed: ObservedPod | None
    templates: Templates | None = None
    children: Children | None = None  # rendered by this pass (None: not needed so far)
    suspend: bool = False
    pod_hash: str | None = None
    refusal: Refusal | None = None
    problem: Problem | None = None


class _Halt(Exception):
    """The pass cannot go on (an invalid spec, broken templates, unreadable policy facts):
    nothing is created or deleted, and the status says why."""

    def __init__(self, problem: Problem, suspended: bool) -> None:
        super().__init__(problem.message)
        self.problem, self.suspended = problem, suspended


class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig, templates: TemplateStore,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.config = config
        self.templates = templates
        gateway = config.gateway_service_account
        self.defaults = RenderDefaults(
            worker_image=config.worker_image, database_secret=config.database_secret,
            gateway_service_account=(ServiceAccountRef(gateway.namespace, gateway.name)
                                     if gateway is not None else None),
            resources=config.default_resources, storage_size=config.default_storage_size,
            storage_class=config.default_storage_class, worker_env=config.worker_env())
        self._clock = clock
        self._now = now
        # One pacer for the whole process: the fleet's re-creations share one pace.
        self.restarts = SlotPacer(config.pod_restarts_per_second)
        self.pending_writes = SlotPacer(PENDING_WRITE_PACE * config.pod_restarts_per_second)
        self.inventory = Inventory(kube, clock)
        self.policy = config.bot_policy()
        self.facts = FactsCache(kube, clock)
        self.identities = IdentityBook()
        self.applier = Applier(kube, self.inventory, clock)
        self.pods = PodControl(kube, self.restarts, clock)
        self.status = StatusWriter(kube, self.pending_writes, clock, now)

    # --- the pass ---------------------------------------------------------------------------

    def reconcile(self, bot: Mapping[str, Any], pod: Mapping[str, Any] | ObservedPod | None,
                  memory: BotMemory) -> Outcome:
        """`pod` is the bot's pod as last seen by the operator's watch (None: none seen), raw
        or already observed (the watch keeps only the ObservedPod)."""
        outcome = self._reconcile(bot, pod, memory)
        if outcome.result == "error" and outcome.delay is None:
            outcome.delay = min(RETRY_AFTER_ERROR, self.config.reconcile_interval)
        if outcome.created:
            what = ", ".join(outcome.created)
            # A pod on its own is a restart or a replacement: PodCreated. A first pass (or a
            # repair) creates several objects: one Created Event for all of them, the pod too.
            reason = "PodCreated" if outcome.created == [outcome.pod_created] else "Created"
            outcome.events.insert(0, Event("Normal", reason, f"created {what}"))
            bot_log(bot).info("created %s", what)
        return outcome

    def _reconcile(self, bot: Mapping[str, Any], pod: Mapping[str, Any] | ObservedPod | None,
                   memory: BotMemory) -> Outcome:
        meta = bot["metadata"]
        outcome = Outcome()
        if meta.get("deletionTimestamp"):
            return outcome  # the finalizer handles it; never create anything for a dying bot
        p = _Pass(bot=bot, ref=BotRef(name=meta["name"], namespace=meta["namespace"],
                                      uid=meta["uid"]),
                  generation=int(meta.get("generation") or 0), log=bot_log(bot),
                  memory=memory, outcome=outcome, observed=self.pods.current(pod, memory))
        try:
            self._plan(p)
        except _Halt as halt:
            self._write_status(p, halt.suspended, halt.problem)
            return outcome
        if p.refusal is not None:
            # Not what the admin allows: no pod (a running one is stopped) and nothing else is
            # created for it. A fixed spec, or the admin's change, heals on a later pass.
            p.observed = self.pods.refuse(p.ref, p.observed, p.refusal, outcome, p.log)
            self._write_status(p, p.suspend,
                               Problem(p.refusal.reason, p.refusal.message, fatal=True))
            return outcome
        assert p.templates is not None and p.pod_hash is not None
        # The pod goes out as early as it can: after only what it needs to be scheduled,
        # admitted and started (PVC: scheduling; ServiceAccount: admission; the API-token
        # Secret: read once when the container starts). The worker's Role, RoleBinding and
        # Lease follow in the same pass; the worker retries until they are there.
        key: tuple[str, int, str] = (p.ref.uid, p.generation, p.templates.version)
        # A bot that ran before (its status has a phase) most likely has its objects: read
        # them first (one GET each) instead of create -> 409 -> GET. A new bot: create first.
        memory.read_first = bool((bot.get("status") or {}).get("phase"))
        check = (memory.ensured_key != key
                 or self._clock() - memory.ensured_at >= self.config.resync_interval)
        snapshot = self._ensure_before_pod(p, key) if check else None
        if p.problem is None:
            self._pod_step(p)
            if check and p.children is not None:
                self._ensure_after_pod(p, key, snapshot)
        self._write_status(p, p.suspend, p.problem)
        if self.templates.error != memory.template_error:
            memory.template_error = self.templates.error
            if self.templates.error:
                outcome.events.append(Event("Warning", "TemplateError", "using the last good "
                                            f"templates: {self.templates.error}"))
        return outcome

    # --- the steps ----------------------------------------------------------------------------

    def _plan(self, p: _Pass) -> None:
        """The templates, the policy's verdict and the pod's hash, from the render cache while
        the spec, templates and facts are the same; raises _Halt when the pass cannot go on."""
        template_problem: Problem | None = None
        try:
            p.templates = self.templates.get()
        except TemplateError as e:
            template_problem = Problem("TemplateError", str(e), fatal=True)
        memory = p.memory
        facts = self._read_facts(p, memory.secret_names, log_failure=True)
        rendered = memory.rendered
        if (p.templates is not None and rendered is not None
                and rendered[0] == (p.ref.uid, p.generation, p.templates.version, facts)):
            # The same spec, templates and facts.
            p.suspend, p.pod_hash, p.refusal = rendered[1], rendered[2], rendered[3]
            return
        try:
            spec = WhatsAppBotSpec.model_validate(p.bot.get("spec") or {})
        except ValidationError as e:
            # The CRD admitted it but the model refuses it (an older CRD, a hand-applied
            # one): report it and leave the running pod alone; a fixed spec heals.
            raise _Halt(Problem("InvalidSpec", _validation_message(e), fatal=True),
                        False) from e
        if p.templates is None:
            assert template_problem is not None
            raise _Halt(template_problem, spec.suspend)
        names = tuple(sorted({name for _, name in secret_refs(spec)}))
        if names != memory.secret_names:
            memory.secret_names = names
            facts = self._read_facts(p, names, log_failure=False)
        p.suspend = spec.suspend
        p.refusal = check_policy(spec, facts, self.policy)
        if p.refusal is None:
            try:
                p.children = render_children(p.ref, spec, self.defaults, p.templates)
            except TemplateError as e:
                raise _Halt(Problem("TemplateError", str(e), fatal=True), spec.suspend) from e
            p.pod_hash = p.children.pod_hash
        memory.rendered = ((p.ref.uid, p.generation, p.templates.version, facts), p.suspend,
                           p.pod_hash, p.refusal)

    def _read_facts(self, p: _Pass, names: tuple[str, ...], log_failure: bool) -> Facts:
        try:
            return self._facts(p.ref, names)
        except KubeError as e:
            p.outcome.result, p.outcome.error = "error", str(e)
            if log_failure:
                p.log.warning("could not read the policy facts: %s", e)
            raise _Halt(Problem("PolicyUnverified", f"policy facts: {e}"), False) from e

    def _facts(self, ref: BotRef, secrets: tuple[str, ...]) -> Facts:
        facts = self.facts.facts(ref.namespace, secrets)  # shared by the namespace's bots
        duplicate_of = self.identities.earlier(ref.namespace, ref.name)
        return facts if duplicate_of is None else replace(facts, duplicate_of=duplicate_of)

    def _ensure_before_pod(self, p: _Pass, key: tuple[str, int, str]) -> Snapshot | None:
        """The PVC, ServiceAccount and API-token Secret, together (the Secret is not listed:
        with a listing to compare with, it is left to the pod step)."""
        snapshot: Snapshot | None = None
        try:
            snapshot = self.applier.listing(p.ref, p.memory, key)
        except KubeError as e:
            p.problem = self.applier.failed(e, p.outcome, p.log, p.memory)
            return None
        p.children = p.children or self._render(p)
        p.problem = self.applier.ensure(
            p.ref, before_pod(p.children), None if snapshot else p.children.api_secret,
            p.outcome, p.log, p.memory, snapshot, at_once=True)
        return snapshot

    def _ensure_after_pod(self, p: _Pass, key: tuple[str, int, str],
                          snapshot: Snapshot | None) -> None:
        assert p.children is not None
        memory = p.memory
        after = self.applier.ensure(p.ref, after_pod(p.children), None, p.outcome, p.log,
                                    memory, snapshot)
        p.problem = p.problem or after
        if after is None:
            memory.ensured_key, memory.direct = key, False
            # As of the listing it was checked against, if any.
            memory.ensured_at = snapshot.taken_at if snapshot is not None else self._clock()

    def _pod_step(self, p: _Pass) -> None:
        """Decide and take the pod's action, paced fleet-wide when it is a restart."""
        memory = p.memory
        decision = decide_pod(bot_uid=p.ref.uid, desired_hash=None if p.suspend
                              else p.pod_hash, observed=p.observed)
        wait = self.pods.restart_slot(p.bot, p.ref, decision, memory)
        if wait > 0:
            # A replacement waiting for its start slot: nothing to do until then.
            decision = PodDecision(PodAction.WAIT, "RestartPaced",
                                   f"pod replacement paced: starts in {wait:.1f} s")
        if decision.action == PodAction.CREATE:
            p.children = p.children or self._render(p)
        replacing = (memory.replaced_at is not None
                     and self._clock() - memory.replaced_at < REPLACEMENT_WINDOW)
        if (decision.action == PodAction.CREATE and not replacing and p.children is not None
                and p.children.api_secret is not None
                and self._clock() - memory.secret_at >= self.config.resync_interval):
            # The pod reads the token once, at start: make sure it is there (the listing
            # does not cover Secrets). Deleting the Secret and the pod rotates the token.
            # (A replacement's predecessor ran with it: no need.)
            p.problem = self.applier.ensure(p.ref, [], p.children.api_secret, p.outcome,
                                            p.log, memory, None)
        if p.problem is None:
            p.observed, p.problem = self.pods.act(p.ref, p.children, decision, p.observed,
                                                  p.outcome, p.log)
        self._remember_pod(p, decision, replacing)
        moving = decision.action in (PodAction.WAIT, PodAction.CREATE, PodAction.DELETE)
        if moving and p.problem is None:
            # Something is in motion: look again soon. A refused pod (quota, admission,
            # an impossible spec) is retried at the normal pace instead of hammering.
            p.outcome.delay = wait if wait > 0 else FAST_REQUEUE
            if p.outcome.result == "success":
                p.outcome.result = "requeue"

    def _remember_pod(self, p: _Pass, decision: PodDecision, replacing: bool) -> None:
        memory, outcome = p.memory, p.outcome
        if decision.action == PodAction.DELETE and decision.reason in REPLACEMENTS:
            memory.replaced_at = self._clock()
        if decision.action == PodAction.CREATE:
            # As created, or as read after a 409 (None: gone in between).
            memory.pod, memory.pod_at, memory.pod_seen = p.observed, self._clock(), False
            if replacing and outcome.pod_created is not None:
                # Its PodDeleted Event said a replacement follows: no second Event.
                p.log.info("created %s (replacement)", outcome.pod_created)
                outcome.created.remove(outcome.pod_created)
                outcome.pod_created = None
            memory.replaced_at = None

    def _render(self, p: _Pass) -> Children:
        """The bot's objects again, from a spec and templates that rendered before."""
        assert p.templates is not None
        spec = WhatsAppBotSpec.model_validate(p.bot.get("spec") or {})
        return render_children(p.ref, spec, self.defaults, p.templates)

    def _write_status(self, p: _Pass, suspended: bool, problem: Problem | None) -> None:
        self.status.write(p.bot, p.ref, p.generation, suspended, p.observed, problem,
                          p.outcome, p.log, p.memory)
        announce_session_action(self.kube, p.bot, p.memory, p.log, self._now())

    # --- deletion -----------------------------------------------------------------------------

    def finalize(self, bot: Mapping[str, Any]) -> list[Event]:
        """The bot is being deleted: honour storage.retainPolicy for the auth volume. Children
        with an owner reference (pod, RBAC, Lease) go with the garbage collector."""
        meta = bot["metadata"]
        ref = BotRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        log = bot_log(bot)
        # A bot deleted while waiting for a restart or status-write slot no longer needs it
        # (and must not stay counted in wabot_operator_pod_restarts_waiting).
        self.pods.forget(ref.uid)
        self.pending_writes.forget(ref.uid)
        policy = ((bot.get("spec") or {}).get("storage") or {}).get("retainPolicy", "Retain")
        pvc = naming.pvc_name(ref.name)
        if policy == "Delete":
            try:
                self.kube.delete("PersistentVolumeClaim", ref.namespace, pvc)
            except KubeError as e:
                if not e.not_found:
                    raise
            log.info("deleted the auth volume %s (retainPolicy Delete)", pvc)
            return [Event("Normal", "VolumeDeleted", f"deleted PVC {pvc} (retainPolicy Delete)")]
        # Retain (also for an unreadable spec: keeping a session is the reversible choice).
        try:
            observed = self.kube.read("PersistentVolumeClaim", ref.namespace, pvc)
        except KubeError as e:
            if e.not_found:
                return []
            raise
        refs = observed["metadata"].get("ownerReferences") or []
        kept = [r for r in refs if not (r.get("kind") == "WhatsAppBot" and
                                        r.get("name") == ref.name)]
        if kept != refs:
            self.kube.patch("PersistentVolumeClaim", ref.namespace, pvc, {"metadata": {
                "ownerReferences": kept or None,
                "resourceVersion": observed["metadata"]["resourceVersion"],
            }})
        log.info("kept the auth volume %s (retainPolicy Retain)", pvc)
        return [Event("Normal", "VolumeRetained",
                      f"kept PVC {pvc} and the session on it (retainPolicy Retain)")]


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
