"""One level-based pass over one bot: render, make the supporting objects exist, take the pod
action the decision function picked, write the operator's part of status.

Synchronous on purpose (the kopf layer runs it in a thread): it is a straight sequence of API
calls whose every decision comes from the pure modules (render, drift, decide, status).
Nothing here remembers more than "when did I last check the supporting objects", so a
restarted operator converges from whatever it finds.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from wabot import naming
from wabot.spec import Phase, WhatsAppBotSpec
from wabot_operator.config import OperatorConfig
from wabot_operator.decide import PodAction, PodDecision, decide_pod
from wabot_operator.drift import compute_drift
from wabot_operator.kube import Kube, KubeError
from wabot_operator.observe import ObservedPod, observe_pod
from wabot_operator.render import (
    BotRef,
    Children,
    RenderDefaults,
    ServiceAccountRef,
    render_children,
)
from wabot_operator.status import (
    Problem,
    current_operator_status,
    derive_status,
    parse_conditions,
    parse_report,
    status_patch,
)
from wabot_operator.templates import TemplateError, TemplateStore

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
    # The last status patch written, and the resourceVersion of the bot it was computed from:
    # until the watch delivers a newer bot, passes build on that patch instead of the stale
    # copy of the bot.
    written: dict[str, Any] | None = None
    written_from: str | None = None
    template_error: str | None = None  # last one announced


@dataclass
class Outcome:
    result: str = "success"  # success | requeue | error (the metric label)
    events: list[Event] = field(default_factory=list)
    phase: Phase | None = None
    delay: float | None = None  # look again after this many seconds (None: the usual interval)
    error: str | None = None


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
            storage_class=config.default_storage_class)
        self._clock = clock
        self._now = now

    # --- the pass ---------------------------------------------------------------------------

    def reconcile(self, bot: Mapping[str, Any], pod: Mapping[str, Any] | None,
                  memory: BotMemory) -> Outcome:
        """`pod` is the bot's pod as last seen by the operator's watch (None: none seen)."""
        meta = bot["metadata"]
        ref = BotRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        log = bot_log(bot)
        generation = int(meta.get("generation") or 0)
        outcome = Outcome()
        if meta.get("deletionTimestamp"):
            return outcome  # the finalizer handles it; never create anything for a dying bot

        observed = observe_pod(pod) if pod is not None else None
        problem: Problem | None = None
        try:
            spec = WhatsAppBotSpec.model_validate(bot.get("spec") or {})
        except ValidationError as e:
            # The CRD admitted it but the model refuses it (an older CRD, a hand-applied one):
            # report it and leave the running pod alone; a fixed spec heals on the next pass.
            problem = Problem("InvalidSpec", _validation_message(e), fatal=True)
            self._write_status(bot, ref, generation, False, observed, problem, outcome, log,
                               memory)
            return outcome

        try:
            children = render_children(ref, spec, self.defaults, self.templates.get())
        except TemplateError as e:
            problem = Problem("TemplateError", str(e), fatal=True)
            self._write_status(bot, ref, generation, spec.suspend, observed, problem, outcome,
                               log, memory)
            return outcome

        try:
            self._ensure_supporting(ref, children, generation, memory, outcome, log)
        except KubeError as e:
            memory.ensured_key = None
            problem = Problem("ApplyFailed", f"supporting objects: {e}")
            outcome.result, outcome.error = "error", str(e)
            log.warning("could not apply supporting objects: %s", e)

        if problem is None:
            decision = decide_pod(bot_uid=ref.uid, desired_hash=None if spec.suspend
                                  else children.pod_hash, observed=observed)
            observed, problem = self._act_on_pod(ref, children, decision, observed, outcome,
                                                 log)
            moving = decision.action in (PodAction.WAIT, PodAction.CREATE, PodAction.DELETE)
            if moving and problem is None:
                # Something is in motion: look again soon. A refused pod (quota, admission,
                # an impossible spec) is retried at the normal pace instead of hammering.
                outcome.delay = FAST_REQUEUE
                if outcome.result == "success":
                    outcome.result = "requeue"

        self._write_status(bot, ref, generation, spec.suspend, observed, problem, outcome,
                           log, memory)
        if self.templates.error != memory.template_error:
            memory.template_error = self.templates.error
            if self.templates.error:
                outcome.events.append(Event("Warning", "TemplateError", "using the last good "
                                            f"templates: {self.templates.error}"))
        return outcome

    # --- supporting objects ----------------------------------------------------------------

    def _ensure_supporting(self, ref: BotRef, children: Children, generation: int,
                           memory: BotMemory, outcome: Outcome, log: BotLog) -> None:
        """Create-or-patch the PVC, ServiceAccount, Role, RoleBinding and Lease. Skipped while
        nothing that shapes them changed and the resync interval has not passed: in steady
        state a pass costs no API calls."""
        key = (ref.uid, generation, self.templates.get().version)
        due = self._clock() - memory.ensured_at >= self.config.resync_interval
        if memory.ensured_key == key and not due:
            return
        for desired in children.supporting():
            self._ensure_one(ref, desired, outcome, log)
        if children.api_secret is not None:
            self._ensure_api_secret(ref, children.api_secret, outcome, log)
        memory.ensured_key = key
        memory.ensured_at = self._clock()

    def _ensure_one(self, ref: BotRef, desired: dict[str, Any], outcome: Outcome,
                    log: BotLog) -> None:
        kind = desired["kind"]
        name = desired["metadata"]["name"]
        try:
            self.kube.create(desired)
            outcome.events.append(Event("Normal", "Created", f"created {kind} {name}"))
            log.info("created %s %s", kind, name)
            return
        except KubeError as e:
            if not e.conflict:
                raise
        observed = self.kube.read(kind, ref.namespace, name)
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

    def _ensure_api_secret(self, ref: BotRef, desired: dict[str, Any], outcome: Outcome,
                           log: BotLog) -> None:
        """Create `wabot-N-api` with a fresh random token; an existing one is never changed
        (the running worker and the gateway hold its token). The operator may create and get
        Secrets, nothing more: a damaged one is reported, and deleting it makes a new one."""
        name = desired["metadata"]["name"]
        body = {**desired, "data": {naming.API_TOKEN_KEY: base64.b64encode(
            secrets.token_urlsafe(32).encode()).decode()}}
        try:
            self.kube.create(body)
        except KubeError as e:
            if not e.conflict:
                raise
            observed = self.kube.read("Secret", ref.namespace, name)
            if not (observed.get("data") or {}).get(naming.API_TOKEN_KEY):
                outcome.events.append(Event(
                    "Warning", "ApiTokenMissing",
                    f"Secret {name} has no key {naming.API_TOKEN_KEY!r}: the send API is off "
                    "for this bot; delete the Secret and the operator makes a new one"))
            return
        outcome.events.append(Event("Normal", "Created", f"created Secret {name}"))
        log.info("created Secret %s (the bot's API token)", name)

    # --- the pod -----------------------------------------------------------------------------

    def _act_on_pod(self, ref: BotRef, children: Children, decision: PodDecision,
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
            outcome.events.append(Event("Normal", "PodDeleted",
                                        f"{decision.message} (graceful delete)"))
            log.info("deleted pod %s: %s", name, decision.reason)
            return observed, None
        # CREATE
        assert children.pod is not None
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
        outcome.events.append(Event("Normal", "PodCreated",
                                    f"created pod {name} (spec hash {children.pod_hash})"))
        log.info("created pod %s (hash %s)", name, children.pod_hash)
        return observe_pod(created), None

    # --- status ------------------------------------------------------------------------------

    def _write_status(self, bot: Mapping[str, Any], ref: BotRef, generation: int,
                      suspended: bool, observed: ObservedPod | None, problem: Problem | None,
                      outcome: Outcome, log: BotLog, memory: BotMemory) -> None:
        current = dict(bot.get("status") or {})
        seen = (bot.get("metadata") or {}).get("resourceVersion")
        if memory.written is not None and memory.written_from == seen:
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
            return
        try:
            self.kube.patch_bot_status(ref.namespace, ref.name, patch)
        except KubeError as e:
            if e.not_found:
                return
            outcome.result, outcome.error = "error", str(e)
            log.warning("could not write status: %s", e)
            return
        memory.written, memory.written_from = patch, seen
        old_phase = current.get("phase")
        if old_phase != status.phase:
            log.info("phase %s -> %s", old_phase or "-", status.phase)
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
