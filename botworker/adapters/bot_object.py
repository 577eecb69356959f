"""The bot's own WhatsAppBot on the API server, each touch point on its own thread:

- `StatusReporter`: JSON merge patch of `status.worker` (and nothing else) on the bot's own
  WhatsAppBot, through the status subresource. Coalescing: only the newest report is sent, so a
  burst of state changes (QR rotations) costs one request, and an API outage delays reports
  instead of queueing them.
- `SpecWatcher`: lists and watches the bot's own WhatsAppBot (fieldSelector metadata.name=N,
  the only form its Role allows) and hands a new spec to the worker when the generation moves.

The third touch point, the Lease, is `lease_elector`. All of it uses the bot's ServiceAccount
(in-cluster) or $KUBECONFIG, through the small stdlib client in `kube_client` (not the
`kubernetes` package: see that module for why).
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from wabot.spec_view import API_GROUP, API_VERSION, PLURAL
from wabot.specread import dump
from wabot.status_view import WorkerReport

from ..core.backoff import BackoffPolicy
from ..logs import get_logger
from ..metrics import Metrics
from .kube_client import MERGE_PATCH, ApiError, KubeClient, Timeout, shutdown_socket

log = get_logger("kube")

# Shows up in managedFields: which fields this worker wrote (status.worker, the Lease spec).
FIELD_MANAGER = "wabot-worker"
TIMEOUT: Timeout = (5.0, 10.0)
WATCH_TIMEOUT_S = 120


def api_client() -> KubeClient:
    """In a pod: the ServiceAccount's credentials. Elsewhere: $KUBECONFIG (or ~/.kube/config)."""
    return KubeClient.from_environment()


def _bots_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
    return path if name is None else f"{path}/{name}"


def short_error(err: BaseException) -> str:
    """An API failure in one log-safe line: the status for API errors, else type and text."""
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
        body = {"status": {"worker": dump(report)}}
        self._api.request(
            "PATCH", _bots_path(self._namespace, self._name) + "/status",
            query={"fieldManager": FIELD_MANAGER}, body=body, content_type=MERGE_PATCH,
            timeout=TIMEOUT,
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
                    "status patch failed", extra={"error": short_error(exc), "retry_in_s": delay}
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


def get_own_object(api: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    """The bot's WhatsAppBot (the Role allows `get` on it by name)."""
    return api.request("GET", _bots_path(namespace, name), timeout=TIMEOUT)


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
        on_any: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """`resource_version`: resume watching from there instead of listing first. `on_any`:
        called with every version of the object, not only a new generation (annotations and
        status change no generation: the session-action annotation is read there)."""
        self._on_any = on_any
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
        if self._on_any is not None:
            try:
                self._on_any(obj)
            except Exception:
                log.exception("handling the WhatsAppBot's metadata failed")
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
                                   timeout=TIMEOUT)
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
                log.warning("spec watch failed", extra={"error": short_error(exc)})
                self._stop.wait(backoff.delay(failures, 0.5))
            except Exception as exc:
                if self._stop.is_set():
                    return
                failures += 1
                self._metrics.kube_error("spec_watch")
                log.warning("spec watch failed", extra={"error": short_error(exc)})
                self._stop.wait(backoff.delay(failures, 0.5))
