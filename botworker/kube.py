"""The worker's three touch points with the API server, each on its own thread:

- `StatusReporter`: JSON merge patch of `status.worker` (and nothing else) on the bot's own
  WhatsAppBot, through the status subresource. Coalescing: only the newest report is sent, so a
  burst of state changes (QR rotations) costs one request, and an API outage delays reports
  instead of queueing them.
- `LeaseElector`: holds Lease `wabot-N` with get + conditional patch (the bot's Role allows
  nothing else on it), tells the connection when it acquires or loses it, releases it at exit.
- `SpecWatcher`: lists and watches the bot's own WhatsAppBot (fieldSelector metadata.name=N,
  the only form its Role allows) and hands a new spec to the worker when the generation moves.

All of it uses the bot's ServiceAccount (in-cluster) or $KUBECONFIG. This module imports the
Kubernetes client, so the worker imports it only when WABOT_SPEC_SOURCE=kubernetes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from wabot.spec import API_GROUP, API_VERSION, PLURAL, WorkerReport

from . import lease as lz
from .backoff import BackoffPolicy
from .logs import get_logger
from .metrics import Metrics

log = get_logger("kube")

MERGE_PATCH = "application/merge-patch+json"
# Shows up in managedFields: which fields this worker wrote (status.worker, the Lease spec).
FIELD_MANAGER = "wabot-worker"
_SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_TIMEOUT = (5.0, 10.0)


def api_client() -> Any:
    """In a pod: the ServiceAccount's credentials. Elsewhere: $KUBECONFIG (or ~/.kube/config)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and _SA_TOKEN.exists():
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return k8s.ApiClient()
    return k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG")
    )


def _short(err: BaseException) -> str:
    if isinstance(err, ApiException):
        return f"HTTP {err.status} {err.reason}"
    return f"{type(err).__name__}: {err}"[:300]


# --- status ------------------------------------------------------------------------------------


class StatusReporter:
    def __init__(self, api: Any, namespace: str, name: str, metrics: Metrics) -> None:
        self._api = k8s.CustomObjectsApi(api)
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
        self._api.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, self._namespace, PLURAL, self._name, body,
            field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH, _request_timeout=_TIMEOUT,
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


def _record(obj: Any) -> lz.LeaseRecord:
    spec = obj.spec
    return lz.LeaseRecord(
        holder=(spec.holder_identity or None) if spec else None,
        duration_s=spec.lease_duration_seconds if spec else None,
        renew_time=spec.renew_time if spec else None,
        acquire_time=spec.acquire_time if spec else None,
        transitions=(spec.lease_transitions or 0) if spec else 0,
        resource_version=obj.metadata.resource_version,
    )


class LeaseElector:
    """Holds the bot's Lease. Fencing does not depend on the API answering: a timer armed at
    every successful renewal declares the Lease lost at the renew deadline unless a newer
    renewal has moved it, even while a request is still hanging on a dead network."""

    def __init__(
        self,
        api: Any,
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
        self._api = k8s.CoordinationV1Api(api)
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
        obj = self._api.read_namespaced_lease(
            self.name, self.namespace, _request_timeout=self._timeout
        )
        return _record(obj)

    def _patch(self, body: dict[str, Any]) -> lz.LeaseRecord:
        obj = self._api.patch_namespaced_lease(
            self.name, self.namespace, body, field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH, _request_timeout=self._timeout,
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
            except ApiException as exc:
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


def get_own_object(api: Any, namespace: str, name: str) -> dict[str, Any]:
    """The bot's WhatsAppBot (the Role allows `get` on it by name)."""
    obj: Any = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=_TIMEOUT
    )
    return dict(obj)


# --- the spec ----------------------------------------------------------------------------------


class SpecWatcher:
    """Calls `on_object(obj)` with the bot's WhatsAppBot whenever its generation changes."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        metrics: Metrics,
        on_object: Callable[[dict[str, Any]], None],
        generation: int | None = None,
    ) -> None:
        self._api = k8s.CustomObjectsApi(api)
        self.namespace = namespace
        self.name = name
        self._metrics = metrics
        self._on_object = on_object
        self._generation: int | None = generation
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None


    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spec-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _deliver(self, obj: dict[str, Any]) -> None:
        generation = obj.get("metadata", {}).get("generation")
        if generation is not None and generation == self._generation:
            return  # a status update (ours or the operator's): nothing for the worker
        self._generation = generation
        try:
            self._on_object(obj)
        except Exception:
            log.exception("applying the new spec failed")

    def _run(self) -> None:
        selector = f"metadata.name={self.name}"
        failures = 0
        backoff = BackoffPolicy(base_s=1.0, cap_s=30.0)
        while not self._stop.is_set():
            try:
                listed: Any = self._api.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL,
                    field_selector=selector, _request_timeout=_TIMEOUT,
                )
                for item in listed.get("items", []):
                    self._deliver(item)
                rv = listed.get("metadata", {}).get("resourceVersion")
                self._watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
                for event in self._watch.stream(
                    self._api.list_namespaced_custom_object,
                    API_GROUP, API_VERSION, self.namespace, PLURAL,
                    field_selector=selector, resource_version=rv, timeout_seconds=120,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        break
                    kind = event.get("type")
                    obj = event.get("raw_object") or event.get("object")
                    if kind in ("ADDED", "MODIFIED") and isinstance(obj, dict):
                        self._deliver(obj)
                    elif kind == "DELETED":
                        log.info("the WhatsAppBot was deleted; the operator will stop this pod")
                failures = 0
            except ApiException as exc:
                failures += 1
                if exc.status != 410:
                    self._metrics.kube_error("spec_watch")
                    log.warning("spec watch failed", extra={"error": _short(exc)})
                self._stop.wait(backoff.delay(failures, 0.5) if exc.status != 410 else 0)
            except Exception as exc:
                failures += 1
                self._metrics.kube_error("spec_watch")
                log.warning("spec watch failed", extra={"error": _short(exc)})
                self._stop.wait(backoff.delay(failures, 0.5))
