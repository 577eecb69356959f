"""The worker's three touch points with the API server, each on its own thread:

- `StatusReporter`: JSON merge patch of `status.worker` (and nothing else) on the bot's own
  WhatsAppBot, through the status subresource. Coalescing: only the newest report is sent, so a
  burst of state changes (QR rotations) costs one request, and an API outage delays reports
  instead of queueing them.
- `LeaseElector`: holds Lease `wabot-N` with get + conditional patch (the bot's Role allows
  nothing else on it), tells the connection when it acquires or loses it, releases it at exit.
- `SpecWatcher`: lists and watches the bot's own WhatsAppBot (fieldSelector metadata.name=N,
  the only form its Role allows) and hands a new spec to the worker when the generation moves.

All of it uses the bot's ServiceAccount (in-cluster) or $KUBECONFIG, through the small stdlib
client in `kubeapi` (not the `kubernetes` package: see that module for why).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from wabot.spec import API_GROUP, API_VERSION, PLURAL, WorkerReport

from . import lease as lz
from .backoff import BackoffPolicy
from .kubeapi import MERGE_PATCH, ApiError, KubeClient, Timeout, shutdown_socket
from .logs import get_logger
from .metrics import Metrics

log = get_logger("kube")

# Shows up in managedFields: which fields this worker wrote (status.worker, the Lease spec).
FIELD_MANAGER = "wabot-worker"
_TIMEOUT: Timeout = (5.0, 10.0)
WATCH_TIMEOUT_S = 120


def api_client() -> KubeClient:
    """In a pod: the ServiceAccount's credentials. Elsewhere: $KUBECONFIG (or ~/.kube/config)."""
    return KubeClient.from_environment()


def _bots_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
    return path if name is None else f"{path}/{name}"


def _lease_path(namespace: str, name: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"


def _short(err: BaseException) -> str:
    if isinstance(err, ApiError):
        return f"HTTP {err.status} {err.reason}"
    return f"{type(err).__name__}: {err}"[:300]


# --- status ------------------------------------------------------------------------------------


class StatusReporter:
    def __init__(self, api: KubeClient, namespace: str, name: str, metrics: Metrics) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self._metrics = metrics
        self._cond = threading.Condition()
        self._latest: WorkerReport | None = None
        self._sent: WorkerReport | None = None
        self._stop = False
        self._thread: threading.Thread | None = None
        self._backoff = BackoffPolicy(base_s=1.0, cap_s=30.0)

    def publish(self, report: WorkerReport) -> None:
        with self._cond:
            self._latest = report
            self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
        self._thread.start()

    def patch_once(self, report: WorkerReport) -> None:
        """Merge-patch status.worker with `report`; None fields delete stale keys."""
        body = {"status": {"worker": report.model_dump(mode="json", by_alias=True)}}
        self._api.request(
            "PATCH", _bots_path(self._namespace, self._name) + "/status",
            query={"fieldManager": FIELD_MANAGER}, body=body, content_type=MERGE_PATCH,
            timeout=_TIMEOUT,
        )

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._stop and (self._latest is None or self._latest is self._sent):
                    self._cond.wait()
                if self._stop and (self._latest is None or self._latest is self._sent):
                    return
                report = self._latest
            assert report is not None
            try:
                self.patch_once(report)
            except Exception as exc:
                failures += 1
                self._metrics.kube_error("status_patch")
                delay = self._backoff.delay(failures, 0.5)
                log.warning(
                    "status patch failed", extra={"error": _short(exc), "retry_in_s": delay}
                )
                with self._cond:
                    if self._stop:
                        return
                    self._cond.wait(delay)
                continue
            failures = 0
            with self._cond:
                self._sent = report
                self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the newest report has been sent (used at shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._latest is not None and self._latest is not self._sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()


# --- the Lease ---------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    """A Lease MicroTime ("2030-01-01T00:00:00.000000Z"); None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _record(obj: dict[str, Any]) -> lz.LeaseRecord:
    spec = obj.get("spec") or {}
    return lz.LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        duration_s=spec.get("leaseDurationSeconds"),
        renew_time=_time(spec.get("renewTime")),
        acquire_time=_time(spec.get("acquireTime")),
        transitions=spec.get("leaseTransitions") or 0,
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
    )


class LeaseElector:
    """Holds the bot's Lease. Fencing does not depend on the API answering: a timer armed at
    every successful renewal declares the Lease lost at the renew deadline unless a newer
    renewal has moved it, even while a request is still hanging on a dead network."""

    def __init__(
        self,
        api: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        metrics: Metrics,
        *,
        on_acquired: Callable[[], None],
        on_lost: Callable[[str], None],
        timing: lz.Timing = lz.DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._metrics = metrics
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self.timing = timing
        self._clock = clock
        # A Lease call may not outlast a fraction of the duration (client-go bounds it by the
        # renew deadline); the fence timer covers the rest.
        t = max(1.0, timing.duration_s / 5.0)
        self._timeout = (t, t)
        self._held = False
        # resourceVersion of the record this process last wrote: while the Lease still shows
        # exactly that record, nobody else has written it, so it is still this process's
        # (e.g. after fencing itself through an API outage) even though it names only the pod.
        self._written_rv: str | None = None
        self._last_renewed: float | None = None
        self._obs: lz.Observation | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()  # held/_last_renewed; never held across a request
        self._calls = threading.Lock()  # one Lease request at a time (step vs release)
        self._fence: threading.Timer | None = None
        self._complained: str | None = None

    @property
    def held(self) -> bool:
        return self._held

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-elector", daemon=True)
        self._thread.start()

    def _read(self) -> lz.LeaseRecord:
        obj = self._api.request("GET", _lease_path(self.namespace, self.name),
                                timeout=self._timeout)
        return _record(obj)

    def _patch(self, body: dict[str, Any]) -> lz.LeaseRecord:
        # Conditional: the body carries the resourceVersion the decision was based on, so a
        # write racing another contender's gets 409 Conflict instead of overwriting it.
        obj = self._api.request(
            "PATCH", _lease_path(self.namespace, self.name),
            query={"fieldManager": FIELD_MANAGER}, body=body, content_type=MERGE_PATCH,
            timeout=self._timeout,
        )
        return _record(obj)

    def step(self) -> None:
        """One round: read, decide, maybe write."""
        with self._calls:
            try:
                rec = self._read()
                now = self._clock()
                with self._state:
                    self._obs = lz.observe(self._obs, rec, now)
                    mine = self._held or rec.resource_version == self._written_rv
                    decision = lz.decide(rec, self.identity, self._obs, now,
                                         self.timing.duration_s, held=mine)
                if decision == "wait":
                    if self._held:
                        self._lose(f"taken over by {rec.holder}")
                    elif self._complained != rec.holder:
                        self._complained = rec.holder
                        log.info("waiting for the Lease", extra={"holder": rec.holder})
                    return
                sent_at = self._clock()
                patch = lz.claim_patch(
                    rec, self.identity, datetime.now(UTC), int(self.timing.duration_s),
                    taking_over=not mine,
                )
                written = self._patch(patch)
                with self._state:
                    self._written_rv = written.resource_version
                self._renewed(sent_at)
            except ApiError as exc:
                self._metrics.kube_error("lease_conflict" if exc.status == 409 else "lease")
                if exc.status != 409:
                    log.warning("Lease request failed", extra={"error": _short(exc)})
            except Exception as exc:
                self._metrics.kube_error("lease")
                log.warning("Lease request failed", extra={"error": _short(exc)})
        self._check_deadline()

    def _renewed(self, sent_at: float) -> None:
        acquired = False
        with self._state:
            self._last_renewed = sent_at
            if not self._held:
                self._held = acquired = True
                self._complained = None
            if self._fence is not None:
                self._fence.cancel()
            delay = max(0.0, sent_at + self.timing.renew_deadline_s - self._clock())
            self._fence = threading.Timer(delay, self._check_deadline)
            self._fence.daemon = True
            self._fence.start()
        if acquired:
            log.info("acquired the Lease", extra={"lease": self.name})
            self._on_acquired()

    def _check_deadline(self) -> None:
        with self._state:
            if not (self._held and lz.must_fence(self._last_renewed, self._clock(), self.timing)):
                return
        self._lose("could not renew within the deadline")

    def _lose(self, reason: str) -> None:
        with self._state:
            if not self._held:
                return
            self._held = False
            self._last_renewed = None
            if self._fence is not None:
                self._fence.cancel()
        log.warning("lost the Lease; stopping the WhatsApp session", extra={"reason": reason})
        self._on_lost(reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            wait = self.timing.renew_interval_s if self._held else self.timing.retry_interval_s
            last = self._last_renewed
            if self._held and last is not None and self._clock() - last >= wait:
                wait = self.timing.retry_interval_s  # a renewal failed: try again sooner
            self._stop.wait(wait)

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with `release`, clear the holder if it is still this pod. Call only
        after the WhatsApp session has ended: the next pod may connect the moment it sees the
        Lease free."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._state:
            if self._fence is not None:
                self._fence.cancel()
        if release:
            with self._calls:
                try:
                    rec = self._read()
                    # Only a record this process wrote is released: the record names the
                    # pod, and another process of the same name may hold it.
                    if rec.holder == self.identity and rec.resource_version == self._written_rv:
                        self._patch(lz.release_patch(rec))
                        log.info("released the Lease", extra={"lease": self.name})
                except Exception as exc:
                    self._metrics.kube_error("lease_release")
                    log.warning("could not release the Lease", extra={"error": _short(exc)})
        with self._state:
            self._held = False


def get_own_object(api: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    """The bot's WhatsAppBot (the Role allows `get` on it by name)."""
    return api.request("GET", _bots_path(namespace, name), timeout=_TIMEOUT)


# --- the spec ----------------------------------------------------------------------------------


class SpecWatcher:
    """Calls `on_object(obj)` with the bot's WhatsAppBot whenever its generation changes.

    Lists once, then watches from the list's resourceVersion, and after every watch the server
    ends (each `WATCH_TIMEOUT_S`) resumes from the newest resourceVersion it saw, bookmarks
    included: a quiet bot costs one long-poll every two minutes, not a list. Only when that
    resourceVersion has expired (410 Gone) does it list again.
    """

    def __init__(
        self,
        api: KubeClient,
        namespace: str,
        name: str,
        metrics: Metrics,
        on_object: Callable[[dict[str, Any]], None],
        generation: int | None = None,
        resource_version: str | None = None,
    ) -> None:
        """`resource_version`: resume watching from there instead of listing first."""
        self._api = api
        self.namespace = namespace
        self.name = name
        self._metrics = metrics
        self._on_object = on_object
        self._generation: int | None = generation
        self.resource_version = resource_version
        self.lists = 0  # how many times it listed (the first time, and after each 410)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spec-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._sock_lock:
            shutdown_socket(self._sock)  # ends a read blocked on a quiet watch

    def _deliver(self, obj: dict[str, Any]) -> None:
        generation = obj.get("metadata", {}).get("generation")
        if generation is not None and generation == self._generation:
            return  # a status update (ours or the operator's): nothing for the worker
        self._generation = generation
        try:
            self._on_object(obj)
        except Exception:
            log.exception("applying the new spec failed")

    def _connected(self, sock: socket.socket | None) -> None:
        with self._sock_lock:
            self._sock = sock
            if self._stop.is_set():
                shutdown_socket(sock)

    def _list(self, selector: dict[str, str]) -> None:
        listed = self._api.request("GET", _bots_path(self.namespace), query=selector,
                                   timeout=_TIMEOUT)
        self.lists += 1
        for item in listed.get("items", []):
            self._deliver(item)
        self.resource_version = listed.get("metadata", {}).get("resourceVersion")

    def _watch(self, selector: dict[str, str]) -> None:
        assert self.resource_version is not None
        query = {**selector, "resourceVersion": self.resource_version,
                 "allowWatchBookmarks": "true"}
        try:
            for event in self._api.watch(_bots_path(self.namespace), query,
                                         timeout_s=WATCH_TIMEOUT_S,
                                         on_connection=self._connected):
                if self._stop.is_set():
                    return
                rv = event.object.get("metadata", {}).get("resourceVersion")
                if event.type in ("ADDED", "MODIFIED"):
                    self._deliver(event.object)
                elif event.type == "DELETED":
                    log.info("the WhatsAppBot was deleted; the operator will stop this pod")
                if rv:
                    self.resource_version = rv
        finally:
            self._connected(None)

    def _run(self) -> None:
        selector = {"fieldSelector": f"metadata.name={self.name}"}
        failures = 0
        backoff = BackoffPolicy(base_s=1.0, cap_s=30.0)
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list(selector)
                self._watch(selector)
                failures = 0
            except ApiError as exc:
                if exc.status == 410:
                    # Expired: the events since our resourceVersion are gone; list again.
                    log.info("spec watch expired; listing again")
                    self.resource_version = None
                    continue
                failures += 1
                self._metrics.kube_error("spec_watch")
                log.warning("spec watch failed", extra={"error": _short(exc)})
                self._stop.wait(backoff.delay(failures, 0.5))
            except Exception as exc:
                if self._stop.is_set():
                    return
                failures += 1
                self._metrics.kube_error("spec_watch")
                log.warning("spec watch failed", extra={"error": _short(exc)})
                self._stop.wait(backoff.delay(failures, 0.5))
