"""What the chaos test watches and what stands in for the kubelet.

`NamespaceRecorder` records every watch event of the bots' pods and Leases in one namespace, in
the API server's order, resuming from the last resourceVersion through API-server restarts (a
410 Gone, which would hide events, is counted as a gap and fails the test).

`KubeletStandIn`: kwok runs no containers, so no worker runs in the bots' pods. To exercise
Lease fencing, the stand-in does what a kubelet plus the worker would do with the Lease: for
every pod of a bot that is Running and not terminating it starts the worker's REAL Lease
elector (`botworker.adapters.lease_elector.LeaseElector`, decisions from
`botworker/core/lease.py`) with the pod name as identity (the worker's `POD_NAME`) and the
bot's own ServiceAccount token (TokenRequest, as mounted in the pod), and it stops it
(releasing the Lease, as the worker does at SIGTERM) when the pod is marked for deletion or
gone. Like a kubelet, it stops one pod's "container" before it starts a later pod's: events
are handled in the watch's order on one thread. Pods on a real node (`real_nodes`, e.g. the
devcluster's kubelet, devcluster/node.py) are left to it: their worker runs for real.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from botworker.adapters.kube_client import KubeClient
from botworker.adapters.lease_elector import LeaseElector
from botworker.core.lease import Timing
from botworker.metrics import Metrics
from wabot import naming

BOT_SELECTOR = naming.LABEL_BOT


@dataclass(frozen=True)
class PodRec:
    t: float
    type: str  # EXISTING, ADDED, MODIFIED, DELETED, GAP-ADDED, GAP-DELETED
    uid: str
    name: str
    bot: str
    rv: int
    terminating: bool
    phase: str | None
    spec_hash: str | None
    grace: int | None
    owners: tuple[tuple[str, str], ...]
    node: str | None = None


@dataclass(frozen=True)
class LeaseRec:
    t: float
    type: str
    name: str
    bot: str
    rv: int
    holder: str | None
    renew_time: datetime | None
    acquire_time: datetime | None
    duration_s: int | None
    transitions: int


def pod_rec(kind: str, pod: client.V1Pod) -> PodRec:
    meta = pod.metadata
    return PodRec(
        t=time.monotonic(), type=kind, uid=meta.uid, name=meta.name,
        bot=(meta.labels or {}).get(BOT_SELECTOR, ""), rv=int(meta.resource_version),
        terminating=meta.deletion_timestamp is not None,
        phase=pod.status.phase if pod.status else None,
        spec_hash=(meta.annotations or {}).get(naming.ANNOTATION_POD_HASH),
        grace=meta.deletion_grace_period_seconds,
        owners=tuple((o.kind, o.uid) for o in (meta.owner_references or [])),
        node=pod.spec.node_name if pod.spec else None,
    )


def lease_rec(kind: str, lease: client.V1Lease) -> LeaseRec:
    meta, spec = lease.metadata, lease.spec
    return LeaseRec(
        t=time.monotonic(), type=kind, name=meta.name,
        bot=(meta.labels or {}).get(BOT_SELECTOR, ""), rv=int(meta.resource_version),
        holder=(spec.holder_identity or None) if spec else None,
        renew_time=spec.renew_time if spec else None,
        acquire_time=spec.acquire_time if spec else None,
        duration_s=spec.lease_duration_seconds if spec else None,
        transitions=(spec.lease_transitions or 0) if spec else 0,
    )


class NamespaceRecorder:
    """Watches the bots' pods and Leases of one namespace until stopped."""

    def __init__(self, api_client: client.ApiClient, namespace: str,
                 on_pod: Any = None) -> None:
        self.core = client.CoreV1Api(api_client)
        self.coord = client.CoordinationV1Api(api_client)
        self.ns = namespace
        self.on_pod = on_pod
        self.pods: list[PodRec] = []
        self.leases: list[LeaseRec] = []
        # Relists after 410 Gone that found changes the watch did not deliver (a restarted
        # API server's watch cache cannot replay what happened just before it started).
        self.gaps: dict[str, int] = {"pods": 0, "leases": 0}
        self.lossless_relists = 0  # relists after 410 Gone that found nothing missed
        self.reconnects = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=("pods",), daemon=True, name="rec-pods"),
            threading.Thread(target=self._loop, args=("leases",), daemon=True,
                             name="rec-leases"),
        ]
        self._ready = [threading.Event(), threading.Event()]

    def __enter__(self) -> NamespaceRecorder:
        for t in self._threads:
            t.start()
        for e in self._ready:
            if not e.wait(30):
                raise TimeoutError("the recorder could not list")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    # --- one resource --------------------------------------------------------------------------

    def _list(self, what: str) -> Any:
        if what == "pods":
            return self.core.list_namespaced_pod(self.ns, label_selector=BOT_SELECTOR,
                                                 _request_timeout=10)
        return self.coord.list_namespaced_lease(self.ns, label_selector=BOT_SELECTOR,
                                                _request_timeout=10)

    def _emit(self, what: str, kind: str, obj: Any) -> None:
        if what == "pods":
            rec = pod_rec(kind, obj)
            self.pods.append(rec)
            if self.on_pod is not None:
                self.on_pod(rec, obj)
        else:
            self.leases.append(lease_rec(kind, obj))

    def _loop(self, what: str) -> None:
        ready = self._ready[0 if what == "pods" else 1]
        known: dict[str, Any] = {}
        rv: str | None = None
        first = True
        while not self._stop.is_set():
            try:
                if rv is None:
                    listed = self._list(what)
                    seen = {o.metadata.uid: o for o in listed.items}
                    if first:
                        for o in listed.items:
                            self._emit(what, "EXISTING", o)
                    else:
                        # After a 410 Gone (a restarted API server's watch cache starts at
                        # the current revision) the events in between cannot be replayed:
                        # compare the new list with what was known. Identical means nothing
                        # was missed; any difference is emitted as GAP-* and counted as a
                        # lossy gap, which the test refuses.
                        # Deletions first: the watch order inside the gap is unknown, and
                        # a bot's pod has one fixed name (checked by the test), so its old
                        # pod was gone before its new one could be created.
                        deleted = [o for uid, o in known.items() if uid not in seen]
                        added = [o for uid, o in seen.items() if uid not in known]
                        changed = [o for uid, o in seen.items() if uid in known and
                                   known[uid].metadata.resource_version !=
                                   o.metadata.resource_version]
                        for kind, objs in (("GAP-DELETED", deleted), ("GAP-MODIFIED", changed),
                                           ("GAP-ADDED", added)):
                            for o in objs:
                                self._emit(what, kind, o)
                        if deleted or changed or added:
                            self.gaps[what] += 1
                        else:
                            self.lossless_relists += 1
                    known = seen
                    rv = listed.metadata.resource_version
                    first = False
                    ready.set()
                fn = (self.core.list_namespaced_pod if what == "pods"
                      else self.coord.list_namespaced_lease)
                w = watch.Watch()
                for ev in w.stream(fn, self.ns, label_selector=BOT_SELECTOR,
                                   resource_version=rv, timeout_seconds=5,
                                   allow_watch_bookmarks=True, _request_timeout=15):
                    obj = ev["object"]
                    if ev["type"] == "BOOKMARK":
                        rv = obj.metadata.resource_version
                        continue
                    rv = obj.metadata.resource_version
                    if ev["type"] == "DELETED":
                        known.pop(obj.metadata.uid, None)
                    else:
                        known[obj.metadata.uid] = obj
                    self._emit(what, ev["type"], obj)
                    if self._stop.is_set():
                        w.stop()
            except ApiException as e:
                if e.status == 410:
                    rv = None
                else:
                    self.reconnects += 1
                    self.errors.append(f"{what}: {e.status} {e.reason}")
                    self._stop.wait(0.5)
            except Exception as e:  # the API server is restarting: resume from rv
                self.reconnects += 1
                self.errors.append(f"{what}: {type(e).__name__}")
                self._stop.wait(0.5)

    # --- analysis ------------------------------------------------------------------------------

    def pod_overlaps(self) -> dict[str, int]:
        """Per bot, the most pods that existed at once and the most not terminating at once,
        replaying the events in order."""
        exists: dict[str, dict[str, bool]] = defaultdict(dict)
        most_existing = 0
        most_live = 0
        moments_two_live = 0
        moments_two_existing = 0
        for e in self.pods:
            pods = exists[e.bot]
            if e.type in ("DELETED", "GAP-DELETED"):
                pods.pop(e.uid, None)
            else:
                pods[e.uid] = not e.terminating
            n_exist, n_live = len(pods), sum(pods.values())
            most_existing = max(most_existing, n_exist)
            most_live = max(most_live, n_live)
            moments_two_live += n_live > 1
            moments_two_existing += n_exist > 1
        return {"most_existing": most_existing, "most_live": most_live,
                "moments_two_live": moments_two_live,
                "moments_two_existing": moments_two_existing}

    def forced_deletes(self) -> tuple[list[PodRec], list[PodRec]]:
        """Pods on a node whose first terminating event carried grace 0, split into (stray
        deletes of the simulator, the rest). The operator must never force a delete; the
        rest must be empty.

        kwok (the simulated kubelet) finishes a terminating pod with a grace-0 delete *by name*,
        without a UID precondition, and repeats it (the API audit log shows as many of its
        deletes answered 404 as 200). A repeat that arrives after the old pod is gone hits the
        next pod of the same name. Such a delete is recognised by its place: the previous pod of
        the same bot was finished by a grace-0 delete moments before. (A real kubelet deletes
        with the pod's UID as precondition.) A pod not yet scheduled, or already finished, is
        deleted at once by the API server whatever the request said and is not counted."""
        first: dict[str, PodRec] = {}
        finished_at: dict[str, float] = {}  # bot -> when its last pod was finished with grace 0
        stray: list[PodRec] = []
        rest: list[PodRec] = []
        for e in self.pods:
            if (e.terminating or e.type == "DELETED") and e.uid not in first:
                first[e.uid] = e
                if e.grace == 0 and e.node and e.phase not in ("Succeeded", "Failed"):
                    recent = e.t - finished_at.get(e.bot, float("-inf")) < 10.0
                    (stray if recent else rest).append(e)
            if e.type == "DELETED" and e.grace == 0:
                finished_at[e.bot] = e.t
        return stray, rest

    def immediate_deletes_unscheduled(self) -> int:
        first: dict[str, PodRec] = {}
        for e in self.pods:
            if (e.terminating or e.type == "DELETED") and e.uid not in first:
                first[e.uid] = e
        return sum(1 for e in first.values() if e.grace == 0 and not e.node)

    def dump(self, path: Any) -> None:
        import json

        with open(path, "w") as f:
            for e in [*self.pods, *self.leases]:
                f.write(json.dumps({"kind": type(e).__name__, **{
                    k: (str(v) if not isinstance(v, (int, float, str, type(None))) else v)
                    for k, v in e.__dict__.items()}}) + "\n")

    def lease_takeovers_without_expiry(self) -> list[tuple[LeaseRec, LeaseRec]]:
        """Takeovers of a held record before it had expired (renewTime + duration): a second
        holder. A takeover is a change to another holder, or a new acquireTime with more
        leaseTransitions (a process taking over a record of its own pod name). Judged from
        the last record seen before it, so also across a relist gap."""
        bad: list[tuple[LeaseRec, LeaseRec]] = []
        last: dict[str, LeaseRec] = {}
        for e in self.leases:
            prev = last.get(e.name)
            takeover = prev is not None and prev.holder is not None and e.holder is not None \
                and (prev.holder != e.holder or e.transitions > prev.transitions)
            if takeover and prev is not None and prev.renew_time is not None \
                    and e.acquire_time is not None:
                expiry = prev.renew_time.timestamp() + float(prev.duration_s or 15)
                if e.acquire_time.timestamp() < expiry:
                    bad.append((prev, e))
            last[e.name] = e
        return bad

    def unfixed_pod_names(self) -> list[PodRec]:
        """Pods not named wabot-<bot>: with the fixed name the API server itself refuses a
        second pod of a bot while the first exists."""
        return [e for e in self.pods if e.name != naming.child_name(e.bot)]


# --- the kubelet stand-in ---------------------------------------------------------------------


@dataclass
class Incarnation:
    bot: str
    pod: str
    uid: str
    sa: str
    elector: LeaseElector | None = None
    started_at: float = 0.0
    acquired: list[float] = field(default_factory=list)
    lost: list[tuple[float, str]] = field(default_factory=list)
    stopped_at: float | None = None


class KubeletStandIn:
    def __init__(self, admin: client.ApiClient, namespace: str,
                 timing: Timing | None = None,
                 real_nodes: frozenset[str] = frozenset()) -> None:
        self.admin = admin
        self.real_nodes = real_nodes
        self.left_to_real_nodes: set[str] = set()  # pod uids a real kubelet runs
        self.core = client.CoreV1Api(admin)
        self.ns = namespace
        self.timing = timing or Timing(15.0)
        self.incarnations: dict[str, Incarnation] = {}
        self.pending: dict[str, Incarnation] = {}  # Running, waiting for a token
        self.finished: set[str] = set()
        self.believers: dict[str, set[str]] = defaultdict(set)
        self.violations: list[str] = []
        self.token_failures = 0
        self.started = 0
        self.stopped = 0
        self.acquisitions = 0
        self.losses = 0
        self._lock = threading.Lock()
        self._last_retry = 0.0
        self._queue: queue.Queue[tuple[PodRec, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kubelet-stand-in", daemon=True)
        self._clients: list[KubeClient] = []

    def start(self) -> KubeletStandIn:
        self._thread.start()
        return self

    def on_pod(self, rec: PodRec, pod: Any) -> None:
        """Called by the recorder, in watch order."""
        self._queue.put((rec, pod))

    def stop_all(self) -> None:
        self._queue.put(None)
        self._thread.join(120)
        for inc in list(self.incarnations.values()):
            self._stop_one(inc)
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.close()

    def holders_now(self) -> dict[str, set[str]]:
        with self._lock:
            return {b: set(s) for b, s in self.believers.items() if s}

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = ("retry", None)  # type: ignore[assignment]
            if item is None:
                return
            if isinstance(item[0], PodRec):
                self._handle(item[0])
            if self.pending and time.monotonic() - self._last_retry >= 1.0:
                self._last_retry = time.monotonic()
                for uid, inc in list(self.pending.items()):
                    if self._launch(inc):
                        del self.pending[uid]

    def _handle(self, rec: PodRec) -> None:
        if rec.node in self.real_nodes:
            self.left_to_real_nodes.add(rec.uid)
            return
        gone = rec.type in ("DELETED", "GAP-DELETED") or rec.terminating
        if gone:
            self.pending.pop(rec.uid, None)
            inc = self.incarnations.pop(rec.uid, None)
            if inc is not None:
                self._stop_one(inc)
            if rec.type in ("DELETED", "GAP-DELETED"):
                self.finished.add(rec.uid)
            return
        if rec.phase != "Running" or rec.uid in self.incarnations or rec.uid in self.finished \
                or rec.uid in self.pending:
            return
        inc = Incarnation(bot=rec.bot, pod=rec.name, uid=rec.uid, sa=rec.name)
        if not self._launch(inc):
            self.pending[rec.uid] = inc

    def _launch(self, inc: Incarnation) -> bool:
        try:
            token = self.core.create_namespaced_service_account_token(
                inc.sa, self.ns, client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
                _request_timeout=3).status.token
        except Exception:
            self.token_failures += 1
            return False
        api = KubeClient.with_token(self.admin.configuration.host, token,
                                    ca_file=self.admin.configuration.ssl_ca_cert)
        self._clients.append(api)

        def acquired() -> None:
            with self._lock:
                others = self.believers[inc.bot] - {inc.uid}
                if others:
                    self.violations.append(
                        f"{inc.bot}: pod {inc.uid[:8]} acquired while {sorted(others)} held")
                self.believers[inc.bot].add(inc.uid)
                inc.acquired.append(time.monotonic())
                self.acquisitions += 1

        def lost(reason: str) -> None:
            with self._lock:
                self.believers[inc.bot].discard(inc.uid)
                inc.lost.append((time.monotonic(), reason))
                self.losses += 1

        inc.elector = LeaseElector(api, self.ns, naming.child_name(inc.bot), inc.pod,
                                   Metrics(inc.bot, "chaos"), on_acquired=acquired,
                                   on_lost=lost, timing=self.timing)
        inc.started_at = time.monotonic()
        inc.elector.start()
        self.incarnations[inc.uid] = inc
        self.started += 1
        return True

    def _stop_one(self, inc: Incarnation) -> None:
        if inc.elector is not None and inc.stopped_at is None:
            inc.elector.stop(release=True)
            # The thread may still be inside a request (bounded by the elector's timeout):
            # like a kubelet, wait until this "container" is really gone.
            thread = inc.elector._thread
            if thread is not None:
                thread.join(30)
            inc.stopped_at = time.monotonic()
            self.stopped += 1
        with self._lock:
            self.believers[inc.bot].discard(inc.uid)
