"""kopf wiring, kept thin: which events wake which bot, where the reconcile pass runs, and what
happens on startup and deletion. The logic lives in reconcile.py and the pure modules.

Level-based, as kopf's author recommends for robust operators: one daemon per WhatsAppBot runs
a reconcile pass every `reconcile_interval` seconds, and at once when the bot or one of its
pods changes (a watch event wakes it). No pass depends on having seen a particular event, so
missed events, restarts and 409s all converge to the same state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import gc
import logging
import math
import os
import random
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from wabot import naming
from wabot.spec import API_GROUP, API_VERSION, PLURAL
from wabot_operator import clients, metrics
from wabot_operator.apply import APPLY_THREADS
from wabot_operator.botloop import BotLocks, Waker
from wabot_operator.config import OperatorConfig
from wabot_operator.kube import Kube, KubeError
from wabot_operator.memory import BotMemory, Event, Outcome, bot_log
from wabot_operator.observe import ObservedPod, observe_pod
from wabot_operator.podbook import DELETED, PodBook
from wabot_operator.reconcile import Reconciler
from wabot_operator.scope import ensure_peering, fill_identities, fill_pod_book
from wabot_operator.templates import TemplateStore

log = logging.getLogger("wabot_operator")

WAB = (API_GROUP, API_VERSION, PLURAL)
POD_LABELS: dict[str, Any] = {naming.LABEL_BOT: kopf.PRESENT}
# Threads for the reconcile passes (a pass is a short sequence of blocking API calls, mostly
# waiting on the API server): asyncio's default executor has min(32, CPUs + 4) threads, 6 on a
# 2-core machine, and passes queued behind each other there. With 16, a new bot's first pass
# still waited up to 3.4 s for a thread during a 1,000-bot roll-out at 20/s (a pass that
# creates a bot's objects takes 0.3-0.7 s then), and that wait was most of apply -> pod p99.
PASS_THREADS = 32
# Objects per page of kopf's LISTs of the bots and of their pods at start-up (kopf holds each
# page, decoded, until it has handled every object in it; pages of 500 peaked ~30 MiB higher
# for 1,000 bots, docs/benchmarks/operator.md).
LIST_CHUNK = 100
# The pause between the operator's own start-up listing and kopf's (see `startup`).
STARTUP_SPACING_S = 1.0
# After a pass created the pod, the first watch event waits this long before the next pass,
# so that the burst of changes a new pod goes through (scheduled, then Running, ~40 ms apart
# on kwok) is handled by one pass and one status write instead of one each.
COALESCE_S = 0.3
# Connections of kopf's HTTP client (watches, finalizer patches, Events). kopf's own is
# unlimited: in a burst of 1,000 new bots every object's finalizer PATCH opened one, ~170 at
# once, each with a 256 KiB TLS buffer (asyncio's) in this process and a handshake on both
# sides. Requests beyond the limit wait for a free connection.
KOPF_CONNECTIONS = 24
# Python's cyclic garbage collector, tuned for a process that holds a few hundred objects per
# bot (kopf's per-object state, each bot's body) and allocates many short-lived ones per watch
# event. With the default young-generation threshold (700) a full collection ran every ~4 s
# during a 1,000-bot roll-out and took 70-410 ms (growing with the fleet) with the GIL held:
# every pass, watch and request of the process stood still, and the bots applied in that
# moment waited for their pods. Start-up objects (modules, kopf, the clients) are moved out of
# the collector's sight once (gc.freeze), and the young generation is collected every 7,000
# allocations: full collections became 5x rarer and GC time fell from 4.1 to 0.9-1.4 s for
# 1,000 new bots (docs/benchmarks/operator.md). The garbage that needs the collector here
# (kopf's patch objects refer to each other) is a few hundred objects a second.
GC_YOUNG_THRESHOLD = 7000


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps a copy of each object's last handled state (by default in an annotation) to
    tell creations and updates apart for on.create/on.update/on.resume handlers. This operator
    has none: its level-based loop reads the bot itself. Keeping that state cost a PATCH of
    every new bot and a deep copy of the whole bot per watch event. With this storage every
    bot looks unchanged to kopf; deletion is detected from deletionTimestamp, not from diffs,
    so the finalizer and on.delete work as before."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@dataclass
class Runtime:
    """Process-wide state shared by every handler (kept on kopf's memo)."""

    config: OperatorConfig
    reconciler: Reconciler
    phases: metrics.PhaseBook
    pods: PodBook
    wakers: dict[tuple[str, str], Waker] = field(default_factory=dict)
    pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            PASS_THREADS, thread_name_prefix="reconcile"))
    locks: BotLocks = field(default_factory=BotLocks)
    last_pass: float = field(default_factory=time.monotonic)

    def wake(self, namespace: str, bot: str) -> None:
        event = self.wakers.get((namespace, bot))
        if event is not None:
            event.set()

    def lock(self, namespace: str, bot: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self.locks.hold(namespace, bot)


def _runtime(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("the operator did not start up (no runtime in memo)")
    return runtime


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's default login (the kubernetes client's in-cluster or kubeconfig credentials),
    on a connection pool of KOPF_CONNECTIONS. `async`: the pool belongs to kopf's loop."""
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    return clients.kopf_session(info, KOPF_CONNECTIONS)


# --- startup --------------------------------------------------------------------------------


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger,
            **_: Any) -> None:
    cfg = getattr(memo, "config", None)
    config = cfg if isinstance(cfg, OperatorConfig) else OperatorConfig.from_env()
    _configure_kopf(settings, config)

    api_client = clients.api_client(PASS_THREADS + APPLY_THREADS)  # a connection per thread
    if not config.standalone:
        ensure_peering(api_client, config)
    kube = Kube(api_client)
    store = TemplateStore(config.templates_dir)
    store.get()  # fail the startup on a broken template set, not the first reconcile
    pods = PodBook()
    reconciler = Reconciler(kube, config, store)
    try:
        fill_pod_book(kube, config.namespaces, pods)
        fill_identities(kube, config.namespaces, reconciler.identities)
    except KubeError as e:  # kopf runs the start-up handler again
        raise kopf.TemporaryError(f"could not list the bots and their pods: {e}",
                                  delay=5) from e
    # The bots' supporting objects too, before kopf's own listing: the restarted operator's
    # first passes check them against this snapshot instead of listing them in the same
    # second as kopf lists the bots and pods. Only a saving: if it fails, the passes list.
    for namespace in pods.namespaces():
        try:
            reconciler.inventory.snapshot(namespace, -math.inf)
        except KubeError as e:
            logger.warning("could not list the bots' objects in %s at start-up: %s",
                           namespace, e)
    if len(pods):
        # kopf's API discovery and its LIST pages of the bots and pods follow this handler at
        # once, ~20 requests in a second for 1,000 bots: the listing above (12 requests) is
        # kept out of that second, so that a restarted operator stays near 20 requests a
        # second (the two together were 26-34 in a second; docs/benchmarks/operator.md).
        time.sleep(STARTUP_SPACING_S)
    memo.runtime = Runtime(config=config, reconciler=reconciler, phases=metrics.PhaseBook(),
                           pods=pods)
    metrics.serve(config.metrics_port)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    logger.info("wabot operator started: namespaces=%s image=%s templates=%s standalone=%s "
                "pods=%d", ",".join(config.namespaces) or "*", config.worker_image,
                config.templates_dir, config.standalone, len(pods))


def _configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's settings for a process that watches many bots: where its state lives, how its
    Events, watch queues and listings are bounded, and its peering."""
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.reporting_component = "wabot-operator"
    # Which replica acted, visible on every Event (the pod name inside a cluster).
    settings.posting.reporting_instance = f"{socket.gethostname()}-{os.getpid()}"[:128]
    settings.posting.level = logging.WARNING  # Events come from explicit kopf.event calls
    # kopf posts each object's Events from a task of its own, unbounded: during a burst that
    # was ~170 concurrent requests, each on a new TLS connection of kopf's unlimited pool (a
    # handshake for both sides, 256 KiB of buffers in this process). Events may lag a little;
    # the watches, finalizers and reconcile passes do not wait for them. A poster keeps its
    # slot until its object has been idle for `idle_timeout` (1 s by default): with a limit,
    # that would cap posting at ~10 objects a second, behind 20 new bots a second. A pass
    # queues its Events at once, so a short idle time loses nothing.
    settings.posting.worker_limit = 10
    settings.posting.idle_timeout = 0.05
    # kopf handles each object's watch events in a task of its own, kept for `idle_timeout`
    # (5 s) after its last event with that event's whole body: when 1,000 bots arrive at once
    # that was 2,000 tasks (bots and pods) alive together. The handlers here are a few lines.
    settings.queueing.idle_timeout = 0.5
    # Only the bots' pods, filtered by the API server rather than in this process.
    settings.watching.label_selectors["v1", "pods"] = naming.LABEL_BOT
    settings.watching.inactivity_timeout = 70
    # kopf lists each watched kind whole before it watches: a restarted operator with 1,000
    # bots decoded ~60 MiB of pods and bots in one go (tracemalloc) and peaked at 192-200 MiB;
    # in pages of LIST_CHUNK it peaked ~7 MiB lower (docs/benchmarks/operator.md).
    settings.watching.chunk_size = LIST_CHUNK
    settings.peering.name = config.peering_name
    settings.peering.standalone = config.standalone
    settings.peering.priority = config.priority
    settings.peering.clusterwide = config.clusterwide
    settings.peering.mandatory = not config.standalone


# --- watching the bots' pods ----------------------------------------------------------------


# The handlers below are `async def` on purpose: kopf runs a plain `def` handler in a thread of
# its executor, a thread hand-off (and back) per watch event for a few lines of Python.


@kopf.on.event("v1", "pods", labels=POD_LABELS)
async def pod_changed(type: str | None, namespace: str | None, labels: Mapping[str, str],
                      body: kopf.Body, memo: Any, **_: Any) -> None:
    """Keeps the operator's book of pods (what it reads from each, not the whole pod) and
    wakes the pod's bot."""
    drop_managed_fields(body)
    runtime = getattr(memo, "runtime", None)
    if isinstance(runtime, Runtime):
        bot = labels[naming.LABEL_BOT]
        runtime.pods.watched(type, namespace or "", bot, observe_pod(body))
        runtime.wake(namespace or "", bot)


@kopf.on.event(*WAB)
async def bot_changed(type: str | None, namespace: str | None, name: str, body: kopf.Body,
                      memo: Any, **_: Any) -> None:
    drop_managed_fields(body)
    runtime = getattr(memo, "runtime", None)
    if isinstance(runtime, Runtime):
        identities = runtime.reconciler.identities
        others = (identities.gone(namespace or "", name) if type == DELETED
                  else identities.seen(body))
        for bot in [name, *others]:  # a bot of the same identity may run (or stop) now
            runtime.wake(namespace or "", bot)


def drop_managed_fields(body: kopf.Body) -> None:
    """kopf keeps every bot's latest body for its daemon as long as the bot exists, and every
    object's latest body for `queueing.idle_timeout` after its last event. Of a bot's body,
    metadata.managedFields is ~80% (13.1 of 16.3 MiB for 1,000 bots, docs/benchmarks/operator.md)
    and neither kopf nor this operator reads it: it is dropped from the event's dict,
    which kopf shares with the body it keeps, in the event handlers (kopf runs them for every
    event)."""
    meta = body.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


# --- the per-bot loop -------------------------------------------------------------------------


@kopf.daemon(*WAB, cancellation_timeout=30.0, id="reconcile")
async def reconcile_loop(name: str, namespace: str | None, body: kopf.Body,
                         stopped: kopf.DaemonStopped, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    namespace = namespace or ""
    key = (namespace, name)
    wake = Waker()
    runtime.wakers[key] = wake
    memory = BotMemory()
    try:
        if body.get("status"):
            # Spread the first passes of many bots after an operator restart. A new bot (no
            # status yet) gets its pass, and its pod, at once.
            await wake.sleep(stopped, random.uniform(0, 0.5))
        while not stopped:
            wake.clear()
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                await wake.sleep(stopped, runtime.config.reconcile_interval)
                continue
            if (memory.pod is not None and not memory.pod_seen
                    and runtime.pods.shown(namespace, name, memory.pod.uid)):
                # The watch showed the pod this operator created, maybe only between two
                # passes (created, Running and deleted again during one pause): its absence
                # from the book now means it is gone, not that the watch is behind.
                memory.pod_seen = True
            created, delay = await _pass_and_post(runtime, body, namespace, name, memory)
            woken = await wake.sleep(stopped, delay)
            if woken and created and not stopped:
                await Waker().sleep(stopped, COALESCE_S)
    finally:
        if runtime.wakers.get(key) is wake:
            del runtime.wakers[key]
        # Deleted, filtered out or paused by peering: no longer this replica's bot to count.
        runtime.phases.forget(namespace, name)
        runtime.pods.forget(namespace, name)


async def _pass_and_post(runtime: Runtime, body: kopf.Body, namespace: str, name: str,
                         memory: BotMemory) -> tuple[bool, float]:
    """One pass and its Events; returns whether it created the pod and when to look again.
    Nothing of the pass stays bound in the daemon while it sleeps: not the pass's copy of the
    bot (~1 MiB per 1,000 bots), nor its outcome with the Events and the names of what it
    created (~0.3-1.3 KB per bot; docs/benchmarks/operator.md)."""
    outcome = await _one_pass(runtime, _snapshot(body), runtime.pods.get(namespace, name),
                              memory)
    for event in outcome.events:
        _post(body, event)
    delay = outcome.delay if outcome.delay is not None else runtime.config.reconcile_interval
    return outcome.pod_created is not None, delay


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    """A private copy of the bot for one pass, without metadata.managedFields (often the
    largest part of the object, and never read)."""
    raw = dict(body)
    meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k != "managedFields"}
    return copy.deepcopy({**raw, "metadata": meta})


async def _one_pass(runtime: Runtime, bot: dict[str, Any], pod: ObservedPod | None,
                    memory: BotMemory) -> Outcome:
    meta = bot["metadata"]
    started = time.perf_counter()
    async with runtime.lock(meta["namespace"], meta["name"]):
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                runtime.pool, runtime.reconciler.reconcile, bot, pod, memory)
        except Exception as e:
            bot_log(bot).exception("reconcile failed")
            memory.ensured_key = None
            outcome = Outcome(result="error", error=repr(e), delay=5.0)
    metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
    metrics.RECONCILE_TOTAL.labels(outcome.result).inc()
    if outcome.result == "error":
        metrics.RECONCILE_ERRORS.inc()
    if outcome.phase is not None:
        runtime.phases.set(meta["namespace"], meta["name"], outcome.phase)
    runtime.last_pass = time.monotonic()
    return outcome


def _post(body: kopf.Body, event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)


# --- deletion ---------------------------------------------------------------------------------


@kopf.on.delete(*WAB, id="finalize")
async def finalize(body: kopf.Body, name: str, namespace: str | None, memo: Any,
                   **_: Any) -> None:
    """Runs under wabot.io/finalizer: the bot stays until its auth volume is dealt with."""
    runtime = _runtime(memo)
    namespace = namespace or ""
    snapshot = _snapshot(body)
    async with runtime.lock(namespace, name):
        try:
            events = await asyncio.get_running_loop().run_in_executor(
                runtime.pool, runtime.reconciler.finalize, snapshot)
        except Exception as e:
            raise kopf.TemporaryError(f"could not finalize the auth volume: {e}", delay=5) from e
    for event in events:
        _post(body, event)
    runtime.phases.forget(namespace, name)


# --- liveness ---------------------------------------------------------------------------------


@kopf.on.probe(id="bots")
async def bots_probe(memo: Any, **_: Any) -> dict[str, float]:
    """What /healthz reports beside kopf's own liveness: the bots this replica manages (0
    while paused by peering) and the seconds since its last reconcile pass."""
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        return {"bots": 0, "seconds_since_last_pass": -1}
    return {"bots": len(runtime.phases),
            "seconds_since_last_pass": round(time.monotonic() - runtime.last_pass, 1)}

