"""The apply layer for a bot's supporting objects (PVC, ServiceAccount, Role, RoleBinding,
Lease, the gateway's grants) and its API-token Secret: create, or on 409 read, compare
(drift.py) and patch or re-create what drifted.

It only compares and sends: what each object should be comes from specs/, and when to check
at all (a changed spec or templates, the resync interval) from the reconcile pass.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import math
import secrets
from collections.abc import Callable
from typing import Any

from wabot import naming
from wabot_operator.drift import compute_drift
from wabot_operator.inventory import Inventory, Snapshot
from wabot_operator.kube import Kube, KubeError
from wabot_operator.memory import BotLog, BotMemory, Event, Outcome
from wabot_operator.specs.bot import BotRef
from wabot_operator.specs.children import Children
from wabot_operator.status import Problem

# Threads for the independent applies of one pass (see _all_at_once), shared by every pass. A
# new bot's first pass has three (PVC, ServiceAccount, Secret); with 8 threads and the API
# server answering in 0.2-0.5 s during a 1,000-bot roll-out (~9 new bots a second at 0.3 s
# per apply), first passes queued for up to 3.4 s (docs/benchmarks/operator.md).
APPLY_THREADS = 24
_APPLY_POOL = concurrent.futures.ThreadPoolExecutor(APPLY_THREADS, thread_name_prefix="apply")


def before_pod(children: Children) -> list[dict[str, Any]]:
    """What the scheduler and admission need before the pod: its PVC (first: with an
    Immediate StorageClass the scheduler waits until the volume is bound, so it gets the
    longest head start) and its ServiceAccount."""
    return [children.pvc, children.service_account]


def after_pod(children: Children) -> list[dict[str, Any]]:
    """Every other supporting object (Role, RoleBinding, Lease, the gateway's grants)."""
    first = before_pod(children)
    return [o for o in children.supporting() if not any(o is f for f in first)]


class Applier:
    def __init__(self, kube: Kube, inventory: Inventory, clock: Callable[[], float]) -> None:
        self.kube = kube
        self.inventory = inventory
        self._clock = clock

    def listing(self, ref: BotRef, memory: BotMemory,
                key: tuple[str, int, str]) -> Snapshot | None:
        """The namespace's listing to compare with, when this check may use one.

        A re-check (the resync, or a restarted operator's first look at a bot that ran
        before) compares with one listing of the namespace shared by every bot, not one GET
        per object. A changed spec or templates, and the pass after a failed apply, read the
        objects themselves."""
        if not (memory.read_first and not memory.direct and memory.ensured_key in (None, key)):
            return None
        newer_than = memory.ensured_at if memory.ensured_key == key else -math.inf
        return self.inventory.snapshot(ref.namespace, newer_than)

    def ensure(self, ref: BotRef, objects: list[dict[str, Any]], secret: dict[str, Any] | None,
               outcome: Outcome, log: BotLog, memory: BotMemory, snapshot: Snapshot | None,
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
            calls.append(functools.partial(self._ensure_api_secret, ref, secret,
                                           read_first=read_first))
        try:
            if at_once and len(calls) > 1:
                _all_at_once(calls, outcome)
            else:
                for call in calls:
                    call(outcome)
        except KubeError as e:
            return self.failed(e, outcome, log, memory)
        if secret is not None:
            memory.secret_at = self._clock()
        return None

    def failed(self, e: KubeError, outcome: Outcome, log: BotLog, memory: BotMemory) -> Problem:
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
                           read_first: bool = False) -> None:
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
