"""One level-based pass over one bot: render, make the supporting objects exist, take the pod
action the decision function picked, write the operator's part of status.

Synchronous on purpose (the kopf layer runs it in a thread): it is a straight sequence of API
calls whose every decision comes from the pure modules (specs/, drift, decide, status).
Nothing here remembers more than "when did I last check the supporting objects", so a
restarted operator converges from whatever it finds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from wabot import naming
from wabot.spec import Phase, WhatsAppBotSpec
from wabot_operator import metrics
from wabot_operator.config import OperatorConfig
from wabot_operator.decide import PodAction, PodDecision, decide_pod
from wabot_operator.drift import compute_drift
from wabot_operator.facts import FactsCache
from wabot_operator.identities import IdentityBook
from wabot_operator.inventory import Inventory, Snapshot
from wabot_operator.kube import Kube, KubeError
from wabot_operator.observe import ObservedPod, newer, observe_pod
from wabot_operator.pacing import SlotPacer
from wabot_operator.policy import Facts, Refusal, secret_refs
from wabot_operator.policy import check as check_policy
from wabot_operator.specs.bot import BotRef, RenderDefaults, ServiceAccountRef
from wabot_operator.specs.children import Children, render_children
from wabot_operator.status import (
    Problem,
    current_operator_status,
    derive_status,
    parse_conditions,
    parse_report,
    status_patch,
)
from wabot_operator.templates import TemplateError, Templates, TemplateStore

_log = logging.getLogger("wabot_operator.reconcile")


class BotLog(logging.LoggerAdapter[logging.Logger]):
    """Every line names its bot: `[namespace/bot]` in the text, and `bot`, `namespace`,
    `tenant` as fields of the JSON record (kopf's JSON formatter emits extra fields)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"[{extra.get('namespace')}/{extra.get('bot')}] {msg}", kwargs

# How soon to look again while something is in motion (a pod terminating, a pod just created).
FAST_REQUEUE = 1.0
# How soon a pass that failed (an API error, a refused pod, a failed status write) is tried
# again, when nothing wakes the bot first; capped by the reconcile interval. Not at once: a
# refused pod (quota, admission) or an unavailable API server would be hammered.
RETRY_AFTER_ERROR = 10.0
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
# A new pod goes through a few Pending states (Unschedulable while its volume is being bound,
# scheduled) before it runs, each a moment apart. While the bot stays Pending on a live pod, a
# status change of the conditions alone waits up to this long (from when it was first seen)
# for the step that changes the phase too: usually one write for all of them instead of one
# per step (in a burst of 300 bots the steps were seconds apart). A new bot's first status
# waits as long for its new pod to run (usually one write, Connecting, instead of Pending then
# Connecting). Other phases and the Degraded condition are never held back; the default
# reconcile interval is as long.
PENDING_SETTLE = 10.0
# A running bot's status going back to Pending (its pod gone, or being replaced) takes a
# fleet-wide slot at this multiple of the restart pace. At the default 3 restarts/s a restart
# costs ~3.3 requests (pod, Event, the status when it runs, sometimes the Secret): 10 req/s,
# and the Pending writes 4.5/s on top leave room under 20 req/s for seconds in which several
# new pods report Running together (at twice the pace, 1,000 restarts peaked at 21 requests
# in a second). The last waiting bot shows Pending after ~2/3 of the restart, not ~1/2.
PENDING_WRITE_PACE = 1.5


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class BotMemory:
    """Per-bot memory of one operator process. Losing it (a restart) only costs one extra
    round of reads: it says when the supporting objects were last checked, and for what."""

    ensured_key: tuple[str, int, str] | None = None  # (uid, generation, templates version)
    ensured_at: float = 0.0
    # The last status patch written, the resourceVersion of the bot it was computed from and
    # the one the API server gave the bot for it: until the watch delivers the bot as written
    # (or newer), passes build on that patch instead of the stale copy of the bot.
    written: dict[str, Any] | None = None
    written_from: str | None = None
    written_rv: str | None = None
    held_since: float | None = None  # a Pending -> Pending change waits since then
    # The pod as this operator last created or read it: the watch may show an older state of
    # it for a while (or not show it yet), and a status derived from that would go backwards.
    pod: ObservedPod | None = None
    pod_at: float = 0.0  # when `pod` was created or read
    pod_seen: bool = False  # the watch has shown that pod (then its absence means deleted)
    template_error: str | None = None  # last one announced
    slot_at: float | None = None  # when this bot last used a fleet-wide restart slot
    replaced_at: float | None = None  # when this operator deleted the pod to replace it
    read_first: bool = False  # the bot ran before: its supporting objects most likely exist
    direct: bool = False  # the last apply failed: check the objects themselves, not a listing
    secret_at: float = -math.inf  # when the API-token Secret was last made sure of
    # spec.suspend and the pod's hash, for (uid, generation, templates version): a bot is
    # passed over many times per change (each step of its pod wakes it), and validating plus
    # rendering was the largest part of a pass's own CPU. The validated spec (~5 KB) and the
    # rendered objects (~15 KB) are not kept: a pass that creates or checks something
    # renders them again.
    # The key also holds the policy facts (facts.py) the spec was checked against, so an
    # admin's change of a namespace annotation or a Secret label re-checks the bot; a refused
    # bot's entry holds its Refusal instead of a hash.
    rendered: tuple[tuple[str, int, str, Facts], bool, str | None, Refusal | None] | None = None
    secret_names: tuple[str, ...] = ()  # the Secrets its spec names (facts to read)


@dataclass
class Outcome:
    result: str = "success"  # success | requeue | error (the metric label)
    events: list[Event] = field(default_factory=list)
    phase: Phase | None = None
    delay: float | None = None  # look again after this many seconds (None: the usual interval)
    error: str | None = None
    # "Kind name" of every object this pass created: one Event and one log line for them all
    # (an Event is an API request; a first pass creates seven objects).
    created: list[str] = field(default_factory=list)
    pod_created: str | None = None  # its entry in `created`, when this pass created the pod


def bot_log(bot: Mapping[str, Any]) -> BotLog:
    meta = bot.get("metadata") or {}
    spec = bot.get("spec") or {}
    return BotLog(_log, {"bot": str(meta.get("name")), "namespace": str(meta.get("namespace")),
                         "tenant": str(spec.get("serverName", ""))})


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
        ref = BotRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        log = bot_log(bot)
        generation = int(meta.get("generation") or 0)
        outcome = Outcome()
        if meta.get("deletionTimestamp"):
            return outcome  # the finalizer handles it; never create anything for a dying bot

        observed = pod if pod is None or isinstance(pod, ObservedPod) else observe_pod(pod)
        mine = memory.pod
        if observed is not None:
            if mine is not None and observed.uid == mine.uid:
                memory.pod_seen = True
            observed = newer(observed, mine)
        elif (mine is not None and not memory.pod_seen
              and self._clock() - memory.pod_at < UNSEEN_POD_TRUST):
            observed = mine  # created (or read) by this operator, not shown by the watch yet
        problem: Problem | None = None
        try:
            templates = self.templates.get()
        except TemplateError as e:
            templates, problem = None, Problem("TemplateError", str(e), fatal=True)
        try:
            facts = self._facts(ref, memory.secret_names)
        except KubeError as e:
            outcome.result, outcome.error = "error", str(e)
            log.warning("could not read the policy facts: %s", e)
            self._write_status(bot, ref, generation, False, observed,
                               Problem("PolicyUnverified", f"policy facts: {e}"), outcome,
                               log, memory)
            return outcome
        rendered = memory.rendered
        children: Children | None = None
        refusal: Refusal | None = None
        if (templates is not None and rendered is not None
                and rendered[0] == (ref.uid, generation, templates.version, facts)):
            # The same spec, templates and facts.
            suspend, pod_hash, refusal = rendered[1], rendered[2], rendered[3]
        else:
            try:
                spec = WhatsAppBotSpec.model_validate(bot.get("spec") or {})
            except ValidationError as e:
                # The CRD admitted it but the model refuses it (an older CRD, a hand-applied
                # one): report it and leave the running pod alone; a fixed spec heals.
                problem = Problem("InvalidSpec", _validation_message(e), fatal=True)
                self._write_status(bot, ref, generation, False, observed, problem, outcome,
                                   log, memory)
                return outcome
            if templates is None:
                assert problem is not None
                self._write_status(bot, ref, generation, spec.suspend, observed, problem,
                                   outcome, log, memory)
                return outcome
            names = tuple(sorted({name for _, name in secret_refs(spec)}))
            if names != memory.secret_names:
                memory.secret_names = names
                try:
                    facts = self._facts(ref, names)
                except KubeError as e:
                    outcome.result, outcome.error = "error", str(e)
                    self._write_status(bot, ref, generation, False, observed,
                                       Problem("PolicyUnverified", f"policy facts: {e}"),
                                       outcome, log, memory)
                    return outcome
            suspend, pod_hash = spec.suspend, None
            refusal = check_policy(spec, facts, self.policy)
            if refusal is None:
                try:
                    children = render_children(ref, spec, self.defaults, templates)
                except TemplateError as e:
                    problem = Problem("TemplateError", str(e), fatal=True)
                    self._write_status(bot, ref, generation, spec.suspend, observed, problem,
                                       outcome, log, memory)
                    return outcome
                pod_hash = children.pod_hash
            memory.rendered = ((ref.uid, generation, templates.version, facts), suspend,
                               pod_hash, refusal)
        if refusal is not None:
            # Not what the admin allows: no pod (a running one is stopped) and nothing else is
            # created for it. A fixed spec, or the admin's change, heals on a later pass.
            observed = self._refuse(ref, observed, refusal, outcome, log)
            self._write_status(bot, ref, generation, suspend, observed,
                               Problem(refusal.reason, refusal.message, fatal=True), outcome,
                               log, memory)
            return outcome
        assert pod_hash is not None

        # The pod goes out as early as it can: after only what it needs to be scheduled,
        # admitted and started (PVC: scheduling; ServiceAccount: admission; the API-token
        # Secret: read once when the container starts). The worker's Role, RoleBinding and
        # Lease follow in the same pass; the worker retries until they are there.
        key: tuple[str, int, str] = (ref.uid, generation, templates.version)
        # A bot that ran before (its status has a phase) most likely has its objects: read
        # them first (one GET each) instead of create -> 409 -> GET. A new bot: create first.
        memory.read_first = bool((bot.get("status") or {}).get("phase"))
        check = (memory.ensured_key != key
                 or self._clock() - memory.ensured_at >= self.config.resync_interval)
        snapshot: Snapshot | None = None
        if check and memory.read_first and not memory.direct and memory.ensured_key in (
                None, key):
            # A re-check (the resync, or a restarted operator's first look at a bot that ran
            # before) compares with one listing of the namespace shared by every bot, not
            # one GET per object. A changed spec or templates, and the pass after a failed
            # apply, read the objects themselves.
            newer_than = memory.ensured_at if memory.ensured_key == key else -math.inf
            try:
                snapshot = self.inventory.snapshot(ref.namespace, newer_than)
            except KubeError as e:
                problem = self._apply_failed(e, outcome, log, memory)
        if check and problem is None:
            children = children or self._render(ref, bot, templates)
            problem = self._ensure_supporting(
                ref, _before_pod(children), None if snapshot else children.api_secret,
                outcome, log, memory, snapshot, at_once=True)

        if problem is None:
            decision = decide_pod(bot_uid=ref.uid, desired_hash=None if suspend
                                  else pod_hash, observed=observed)
            wait = self._restart_slot(bot, ref, decision, memory)
            if wait > 0:
                # A replacement waiting for its start slot: nothing to do until then.
                decision = PodDecision(PodAction.WAIT, "RestartPaced",
                                       f"pod replacement paced: starts in {wait:.1f} s")
            if decision.action == PodAction.CREATE:
                children = children or self._render(ref, bot, templates)
            replacing = (memory.replaced_at is not None
                         and self._clock() - memory.replaced_at < REPLACEMENT_WINDOW)
            if (decision.action == PodAction.CREATE and not replacing and children is not None
                    and children.api_secret is not None
                    and self._clock() - memory.secret_at >= self.config.resync_interval):
                # The pod reads the token once, at start: make sure it is there (the listing
                # does not cover Secrets). Deleting the Secret and the pod rotates the token.
                # (A replacement's predecessor ran with it: no need.)
                problem = self._ensure_supporting(ref, [], children.api_secret, outcome, log,
                                                  memory, None)
            if problem is None:
                observed, problem = self._act_on_pod(ref, children, decision, observed,
                                                     outcome, log)
            if decision.action == PodAction.DELETE and decision.reason in REPLACEMENTS:
                memory.replaced_at = self._clock()
            if decision.action == PodAction.CREATE:
                # As created, or as read after a 409 (None: gone in between).
                memory.pod, memory.pod_at, memory.pod_seen = observed, self._clock(), False
                if replacing and outcome.pod_created is not None:
                    # Its PodDeleted Event said a replacement follows: no second Event.
                    log.info("created %s (replacement)", outcome.pod_created)
                    outcome.created.remove(outcome.pod_created)
                    outcome.pod_created = None
                memory.replaced_at = None
            moving = decision.action in (PodAction.WAIT, PodAction.CREATE, PodAction.DELETE)
            if moving and problem is None:
                # Something is in motion: look again soon. A refused pod (quota, admission,
                # an impossible spec) is retried at the normal pace instead of hammering.
                outcome.delay = wait if wait > 0 else FAST_REQUEUE
                if outcome.result == "success":
                    outcome.result = "requeue"
            if check and children is not None:
                after = self._ensure_supporting(ref, _after_pod(children), None, outcome, log,
                                                memory, snapshot)
                problem = problem or after
                if after is None:
                    memory.ensured_key, memory.direct = key, False
                    # As of the listing it was checked against, if any.
                    memory.ensured_at = (snapshot.taken_at if snapshot is not None
                                         else self._clock())

        self._write_status(bot, ref, generation, suspend, observed, problem, outcome, log,
                           memory)
        if self.templates.error != memory.template_error:
            memory.template_error = self.templates.error
            if self.templates.error:
                outcome.events.append(Event("Warning", "TemplateError", "using the last good "
                                            f"templates: {self.templates.error}"))
        return outcome

    def _render(self, ref: BotRef, bot: Mapping[str, Any], templates: Templates) -> Children:
        """The bot's objects again, from a spec and templates that rendered before."""
        spec = WhatsAppBotSpec.model_validate(bot.get("spec") or {})
        return render_children(ref, spec, self.defaults, templates)

    # --- supporting objects ----------------------------------------------------------------

    def _ensure_supporting(self, ref: BotRef, objects: list[dict[str, Any]],
                           secret: dict[str, Any] | None, outcome: Outcome, log: BotLog,
                           memory: BotMemory, snapshot: Snapshot | None,
                           at_once: bool = False) -> Problem | None:
        """Create-or-patch some of the PVC, ServiceAccount, Role, RoleBinding and Lease (as
        listed in `snapshot`, or read one by one), and the API-token `secret`; `at_once`: all
        together, for objects that do not depend on each other (a RoleBinding does: without
        `bind`, the API server refuses one whose Role it cannot read yet). The caller skips
        this while nothing that shapes them changed and the resync interval has not passed:
        in steady state a pass costs no API calls."""
        read_first = memory.read_first
        calls: list[Callable[[Outcome], None]] = [
            functools.partial(self._ensure_one, ref, desired, log=log, read_first=read_first,
                              snapshot=snapshot) for desired in objects]
        if secret is not None:
            calls.append(functools.partial(self._ensure_api_secret, ref, secret, log=log,
                                           read_first=read_first))
        try:
            if at_once and len(calls) > 1:
                _all_at_once(calls, outcome)
            else:
                for call in calls:
                    call(outcome)
        except KubeError as e:
            return self._apply_failed(e, outcome, log, memory)
        if secret is not None:
            memory.secret_at = self._clock()
        return None

    def _apply_failed(self, e: KubeError, outcome: Outcome, log: BotLog,
                      memory: BotMemory) -> Problem:
        # Check again on the next pass, reading the objects themselves (a 409 on a patch
        # built from a listing means that listing is out of date).
        memory.ensured_key, memory.direct = None, True
        outcome.result, outcome.error = "error", str(e)
        log.warning("could not apply supporting objects: %s", e)
        return Problem("ApplyFailed", f"supporting objects: {e}")

    def _ensure_one(self, ref: BotRef, desired: dict[str, Any], outcome: Outcome, *,
                    log: BotLog, read_first: bool = False,
                    snapshot: Snapshot | None = None) -> None:
        kind = desired["kind"]
        name = desired["metadata"]["name"]
        observed = snapshot.get(kind, name) if snapshot is not None else None
        if observed is None:
            # Not listed (or no listing): create it, or read it when it most likely exists.
            observed = self._existing_or_create(ref, desired, outcome,
                                                read_first and snapshot is None)
        if observed is None:
            return
        drift = compute_drift(kind, desired, observed, ref.name)
        for note in drift.notes:
            outcome.events.append(Event("Warning", "DriftNotApplied", f"{kind} {name}: {note}"))
        if drift.recreate:
            self.kube.delete(kind, ref.namespace, name,
                             uid=observed["metadata"].get("uid"))
            self.kube.create(desired)
            outcome.events.append(Event("Normal", "Recreated", f"recreated {kind} {name}"))
            log.info("recreated %s %s", kind, name)
        elif drift.patch is not None:
            self.kube.patch(kind, ref.namespace, name, drift.patch)
            outcome.events.append(Event("Normal", "Updated", f"brought {kind} {name} back "
                                        f"to its rendered state"))
            log.info("patched %s %s: %s", kind, name, sorted(drift.patch))

    def _existing_or_create(self, ref: BotRef, body: dict[str, Any], outcome: Outcome,
                            read_first: bool) -> dict[str, Any] | None:
        """The object as it exists, or None when this call created it.

        `read_first` (a bot that ran before: its objects most likely exist) costs one GET;
        otherwise create first (a new bot: one POST), and read only after a 409."""
        kind, name = body["kind"], body["metadata"]["name"]
        if read_first:
            try:
                return self.kube.read(kind, ref.namespace, name)
            except KubeError as e:
                if not e.not_found:
                    raise
        try:
            self.kube.create(body)
        except KubeError as e:
            if not e.conflict:
                raise
            return self.kube.read(kind, ref.namespace, name)
        outcome.created.append(f"{kind} {name}")
        return None

    def _ensure_api_secret(self, ref: BotRef, desired: dict[str, Any], outcome: Outcome, *,
                           log: BotLog, read_first: bool = False) -> None:
        """Create `wabot-N-api` with a fresh random token; an existing one is never changed
        (the running worker and the gateway hold its token). The operator may create and get
        Secrets, nothing more: a damaged one is reported, and deleting it makes a new one."""
        name = desired["metadata"]["name"]
        body = {**desired, "data": {naming.API_TOKEN_KEY: base64.b64encode(
            secrets.token_urlsafe(32).encode()).decode()}}
        observed = self._existing_or_create(ref, body, outcome, read_first)
        if observed is None:
            return
        if not (observed.get("data") or {}).get(naming.API_TOKEN_KEY):
            outcome.events.append(Event(
                "Warning", "ApiTokenMissing",
                f"Secret {name} has no key {naming.API_TOKEN_KEY!r}: the send API is off "
                "for this bot; delete the Secret and the operator makes a new one"))

    # --- the pod -----------------------------------------------------------------------------

    def _restart_slot(self, bot: Mapping[str, Any], ref: BotRef, decision: PodDecision,
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
            self.restarts.forget(ref.uid)
            metrics.PODS_WAITING_FOR_RESTART.set(self.restarts.waiting())
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

    def _facts(self, ref: BotRef, secrets: tuple[str, ...]) -> Facts:
        return replace(self.facts.facts(ref.namespace, secrets),
                       duplicate_of=self.identities.earlier(ref.namespace, ref.name))

    def _refuse(self, ref: BotRef, observed: ObservedPod | None, refusal: Refusal,
                outcome: Outcome, log: BotLog) -> ObservedPod | None:
        decision = decide_pod(bot_uid=ref.uid, desired_hash=None, observed=observed)
        if decision.action == PodAction.DELETE:
            decision = PodDecision(PodAction.DELETE, refusal.reason,
                                   f"deleting the pod: {refusal.message}")
        observed, _ = self._act_on_pod(ref, None, decision, observed, outcome, log)
        return observed

    def _act_on_pod(self, ref: BotRef, children: Children | None, decision: PodDecision,
                    observed: ObservedPod | None, outcome: Outcome,
                    log: BotLog) -> tuple[ObservedPod | None, Problem | None]:
        name = naming.child_name(ref.name)
        if decision.action == PodAction.NOTHING:
            if decision.reason == "PodNameTaken":
                return observed, Problem(decision.reason, decision.message)
            return observed, None
        if decision.action == PodAction.WAIT:
            return observed, None
        if decision.action == PodAction.DELETE:
            assert observed is not None
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
        # CREATE
        assert children is not None and children.pod is not None
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

    # --- status ------------------------------------------------------------------------------

    def _write_status(self, bot: Mapping[str, Any], ref: BotRef, generation: int,
                      suspended: bool, observed: ObservedPod | None, problem: Problem | None,
                      outcome: Outcome, log: BotLog, memory: BotMemory) -> None:
        current = dict(bot.get("status") or {})
        seen = (bot.get("metadata") or {}).get("resourceVersion")
        if memory.written is not None and _older(seen, memory.written_from, memory.written_rv):
            # The watch has not yet delivered the bot as this operator last wrote it: build on
            # that write (not the stale copy), so transition times, the "phase a -> b" event
            # and Degraded warnings are not repeated.
            current.update(memory.written["status"])
        status = derive_status(
            generation=generation, suspended=suspended, pod=observed,
            report=parse_report(current), problem=problem,
            previous=parse_conditions(current), now=self._now().replace(microsecond=0),
        )
        outcome.phase = status.phase
        patch = status_patch(status)
        if patch == current_operator_status(current):
            memory.held_since = None
            self.pending_writes.forget(ref.uid)
            return
        first = not current.get("phase")
        still_pending = (current.get("phase") == Phase.PENDING.value and _degraded(patch)
                         == _degraded(current_operator_status(current)))
        # A pod this operator just created is usually Running a moment later: a new bot's
        # first status then says Connecting in one write (not Pending, then Connecting), and
        # a restarted bot's may not change at all.
        just_created = (observed is not None and memory.pod is not None
                        and observed.uid == memory.pod.uid
                        and self._clock() - memory.pod_at < PENDING_SETTLE
                        and _degraded(patch)[0] != "True")
        # Likewise while this operator replaces the pod (the old one terminating, then the new
        # one starting): if that is quick, the status need not change at all.
        replacing = (memory.replaced_at is not None
                     and self._clock() - memory.replaced_at < PENDING_SETTLE)
        if problem is None and status.phase == Phase.PENDING and (
                still_pending or just_created or replacing):
            self.pending_writes.forget(ref.uid)  # held here, not paced
            now = self._clock()
            if memory.held_since is None:
                memory.held_since = now
            wait = memory.held_since + PENDING_SETTLE - now
            if wait > 0:
                outcome.delay = min(outcome.delay or wait, wait)
                return
        elif problem is None and status.phase == Phase.PENDING and not first:
            # A bot that ran is going back to Pending: its pod went away or is being replaced.
            # When the whole fleet's pods go (a node pool recycled, an image roll-out), these
            # writes would all come at once: they take fleet-wide slots at PENDING_WRITE_PACE
            # times the restart pace, so each still shows up before its bot's own restart slot.
            wait = self.pending_writes.wait_for(ref.uid, self._clock())
            if wait > 0:
                outcome.delay = min(outcome.delay or wait, wait)
                return
        else:
            # Not a write back to Pending (any more): a slot taken for one is not needed.
            self.pending_writes.forget(ref.uid)
            if not first:
                # A write that does not wait (Connecting once a new pod runs, a problem) uses
                # the same budget: in a mass restart new pods report Running in clumps (13
                # status writes in one second were measured), and the paced Pending writes
                # due next make room for them.
                self.pending_writes.take(self._clock())
        try:
            answer = self.kube.patch_bot_status(ref.namespace, ref.name, patch)
        except KubeError as e:
            if e.not_found:
                return
            outcome.result, outcome.error = "error", str(e)
            log.warning("could not write status: %s", e)
            return
        memory.written, memory.written_from = patch, seen
        memory.held_since = None
        memory.written_rv = (answer.get("metadata") or {}).get("resourceVersion")
        old_phase = current.get("phase")
        if old_phase != status.phase:
            log.info("phase %s -> %s", old_phase or "-", status.phase)
            # Pending and Connecting follow the pod, whose Created/PodCreated/PodDeleted Events
            # say it already: an Event (an API request) for them too would double what a new
            # bot or a mass restart costs. Every other phase gets one.
            if status.phase not in (Phase.PENDING, Phase.CONNECTING):
                outcome.events.append(Event("Normal", "PhaseChanged",
                                            f"phase {old_phase or '-'} -> {status.phase}"))
        if problem is not None:
            degraded = next(c for c in status.conditions if c.type == "Degraded")
            before = {c.type: c for c in parse_conditions(current)}.get("Degraded")
            if before is None or (before.reason, before.message) != (degraded.reason,
                                                                      degraded.message):
                outcome.events.append(Event("Warning", problem.reason, problem.message))
                log.warning("%s: %s", problem.reason, problem.message)

    # --- deletion -----------------------------------------------------------------------------

    def finalize(self, bot: Mapping[str, Any]) -> list[Event]:
        """The bot is being deleted: honour storage.retainPolicy for the auth volume. Children
        with an owner reference (pod, RBAC, Lease) go with the garbage collector."""
        meta = bot["metadata"]
        ref = BotRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        log = bot_log(bot)
        # A bot deleted while waiting for a restart or status-write slot no longer needs it
        # (and must not stay counted in wabot_operator_pod_restarts_waiting).
        self.restarts.forget(ref.uid)
        self.pending_writes.forget(ref.uid)
        metrics.PODS_WAITING_FOR_RESTART.set(self.restarts.waiting())
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


# Threads for the independent applies of one pass (see _all_at_once), shared by every pass. A
# new bot's first pass has three (PVC, ServiceAccount, Secret); with 8 threads and the API
# server answering in 0.2-0.5 s during a 1,000-bot roll-out (~9 new bots a second at 0.3 s
# per apply), first passes queued for up to 3.4 s (docs/benchmarks/operator.md).
APPLY_THREADS = 24
_APPLY_POOL = concurrent.futures.ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="apply")


def _all_at_once(calls: list[Callable[[Outcome], None]], outcome: Outcome) -> None:
    """Run independent applies together: each is a round trip to the API server, and a new
    bot's pod waits for three of them (PVC, ServiceAccount, Secret). What each reports is added
    to `outcome` in the order given; the first error is raised once all have finished."""
    parts = [Outcome() for _ in calls]
    futures = [_APPLY_POOL.submit(call, part) for call, part in zip(calls, parts, strict=True)]
    errors: list[BaseException] = []
    for part, future in zip(parts, futures, strict=True):
        error = future.exception()
        if error is not None:
            errors.append(error)
        outcome.created += part.created
        outcome.events += part.events
    if errors:
        raise errors[0]


def _degraded(patch: Mapping[str, Any]) -> tuple[Any, Any]:
    for c in (patch.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Degraded":
            return c.get("status"), c.get("reason")
    return None, None


def _before_pod(children: Children) -> list[dict[str, Any]]:
    """What the scheduler and admission need before the pod: its PVC (first: with an
    Immediate StorageClass the scheduler waits until the volume is bound, so it gets the
    longest head start) and its ServiceAccount."""
    return [children.pvc, children.service_account]


def _after_pod(children: Children) -> list[dict[str, Any]]:
    """Every other supporting object (Role, RoleBinding, Lease, the gateway's grants)."""
    first = _before_pod(children)
    return [o for o in children.supporting() if not any(o is f for f in first)]


def _older(seen: str | None, written_from: str | None, written_rv: str | None) -> bool:
    """Whether the bot `seen` (its resourceVersion) predates this operator's last status write.

    resourceVersions are opaque strings to clients; the API server's are etcd revisions, so
    when both parse as integers the comparison is exact (a bot delivered by the watch before
    or after kopf's own patch of it, or a later change by anyone, is told apart). Otherwise:
    only the very bot the write was computed from counts as older."""
    if seen is not None and written_rv is not None:
        try:
            return int(seen) < int(written_rv)
        except ValueError:
            pass
    return seen == written_from


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)
