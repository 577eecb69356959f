"""Helpers for the operator's tests against a real API server: the operator as a subprocess
(the real entry point, killable with SIGKILL), polling with timeouts, and a pod-event recorder
that sees every state the API server went through."""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.support import polling
from tests.support.net import free_port, http_status
from wabot import naming
from wabot.spec import API_GROUP, API_VERSION, PLURAL

REPO = Path(__file__).resolve().parents[2]


# Polling against the API server: an ApiException (a server still starting, a 404 before the
# create lands) is a "not yet", not a failure.
eventually = functools.partial(polling.eventually, retry_on=(ApiException,))


@dataclass
class OperatorProcess:
    """`python -m wabot_operator` watching one namespace, as a child process."""

    namespace: str
    kubeconfig: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    standalone: bool = True
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0

    def start(self, wait: bool = True) -> OperatorProcess:
        self.metrics_port, self.health_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "WABOT_OPERATOR_NAMESPACES": self.namespace,
            "WABOT_OPERATOR_STANDALONE": "true" if self.standalone else "false",
            "WABOT_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "WABOT_OPERATOR_HEALTH_PORT": str(self.health_port),
            "WABOT_OPERATOR_RECONCILE_INTERVAL": "2",
            "WABOT_OPERATOR_WORKER_IMAGE": "registry.invalid/wabot-worker:test",
            "WABOT_OPERATOR_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "wabot_operator"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        if wait:
            eventually(self.healthy, timeout=60, what="operator liveness endpoint")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.log()}")
        return http_status(f"http://127.0.0.1:{self.health_port}/healthz") == 200

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the Prometheus text exposition (0 if absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizer removal, exactly like a crashed or evicted pod."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""


class Cluster:
    """Typed shortcuts over the admin client for one test namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.ns = namespace
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.coord = client.CoordinationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.authz = client.AuthorizationV1Api(api_client)

    # --- bots ---
    def create_bot(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "WhatsAppBot",
                "metadata": {"name": name}, "spec": {"serverName": "acme", **(spec or {})}}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, self.ns, PLURAL, body)
        return result

    def bot(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            API_GROUP, API_VERSION, self.ns, PLURAL, name)
        return result

    def patch_bot(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, self.ns, PLURAL, name, {"spec": spec},
            _content_type="application/merge-patch+json")
        return result

    def delete_bot(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, self.ns, PLURAL,
                                                    name)

    def bot_gone(self, name: str) -> bool:
        try:
            self.bot(name)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for c in (self.bot(name).get("status") or {}).get("conditions") or []:
            if c["type"] == kind:
                return dict(c)
        return None

    # --- children ---
    def pod(self, name: str) -> client.V1Pod | None:
        try:
            return self.core.read_namespaced_pod(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def pvc(self, name: str) -> client.V1PersistentVolumeClaim | None:
        try:
            return self.core.read_namespaced_persistent_volume_claim(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def pods_of(self, bot: str) -> list[client.V1Pod]:
        items: list[client.V1Pod] = self.core.list_namespaced_pod(
            self.ns, label_selector=f"wabot.io/bot={bot}").items
        return items

    def bot_api_token(self, bot: str) -> str | None:
        """The send-API token the operator minted for `bot` (its Secret `wabot-<bot>-api`),
        or None while that Secret or its token is not there yet (for `eventually`)."""
        try:
            secret = self.core.read_namespaced_secret(naming.api_secret_name(bot), self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(naming.API_TOKEN_KEY)
        return base64.b64decode(raw).decode() if raw else None

    def events_for(self, name: str) -> list[client.CoreV1Event]:
        items: list[client.CoreV1Event] = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}").items
        return items

    def describe_bot(self, name: str) -> str:
        """What a person would look at with kubectl when a bot does not come up: its status,
        its pod's phase and conditions, its claim, and the Events of all three."""
        lines = []
        try:
            lines.append(f"bot status: {self.bot(name).get('status')!r}")
        except ApiException as e:
            lines.append(f"bot: {e.status} {e.reason}")
        pod_name = naming.child_name(name)
        pod = self.pod(pod_name)
        if pod is None:
            lines.append(f"pod {pod_name}: absent")
        else:
            conditions = [(c.type, c.status, c.reason, c.message)
                          for c in pod.status.conditions or []]
            lines.append(f"pod {pod_name}: phase={pod.status.phase} node={pod.spec.node_name} "
                         f"deleting={pod.metadata.deletion_timestamp} conditions={conditions}")
        claim_name = naming.pvc_name(name)
        claim = self.pvc(claim_name)
        lines.append(f"claim {claim_name}: " + ("absent" if claim is None else
                     f"phase={claim.status.phase} volume={claim.spec.volume_name}"))
        for obj in (name, pod_name, claim_name):
            for ev in self.events_for(obj):
                lines.append(f"event {ev.involved_object.kind}/{obj}: {ev.type} {ev.reason} "
                             f"x{ev.count or 1}: {ev.message}")
        return "\n".join(lines)

    def can(self, user: str, verb: str, resource: str, name: str = "", group: str = "",
            subresource: str = "") -> bool:
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user, groups=["system:serviceaccounts", f"system:serviceaccounts:{self.ns}",
                               "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=self.ns, verb=verb, group=group, resource=resource, name=name or None,
                subresource=subresource or None)))
        return bool(self.authz.create_subject_access_review(review).status.allowed)


@dataclass
class PodEvent:
    type: str
    uid: str
    resource_version: int
    terminating: bool
    grace: int | None
    phase: str | None
    limits: dict[str, str]


class PodRecorder:
    """Records every watch event of one bot's pods, in the API server's order.

    The watch starts from a listed resourceVersion and resumes from the last one it saw, so no
    event in between is skipped (a 410 Gone would fail the test rather than hide a gap)."""

    def __init__(self, api_client: client.ApiClient, namespace: str, bot: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.ns = namespace
        self.selector = f"wabot.io/bot={bot}"
        self.events: list[PodEvent] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _record(self, kind: str, pod: client.V1Pod) -> None:
        c = pod.spec.containers[0]
        self.events.append(PodEvent(
            type=kind, uid=pod.metadata.uid,
            resource_version=int(pod.metadata.resource_version),
            terminating=pod.metadata.deletion_timestamp is not None,
            grace=pod.metadata.deletion_grace_period_seconds,
            phase=pod.status.phase if pod.status else None,
            limits=dict((c.resources.limits or {}) if c.resources else {}),
        ))

    def _run(self) -> None:
        try:
            listed = self.core.list_namespaced_pod(self.ns, label_selector=self.selector)
            for pod in listed.items:
                self._record("EXISTING", pod)
            rv = listed.metadata.resource_version
            self._started.set()
            while not self._stop.is_set():
                w = watch.Watch()
                for ev in w.stream(self.core.list_namespaced_pod, self.ns,
                                   label_selector=self.selector, resource_version=rv,
                                   timeout_seconds=2, allow_watch_bookmarks=False):
                    if ev["type"] == "ERROR":
                        raise AssertionError(f"watch error: {ev['raw_object']}")
                    pod = ev["object"]
                    rv = pod.metadata.resource_version
                    self._record(ev["type"], pod)
                    if self._stop.is_set():
                        w.stop()
        except BaseException as e:  # reported to the test through .error
            self.error = e
            self._started.set()

    def live_counts(self) -> list[int]:
        """How many pods existed (terminating or not) after each event."""
        live: set[str] = set()
        counts = []
        for e in self.events:
            if e.type == "DELETED":
                live.discard(e.uid)
            else:
                live.add(e.uid)
            counts.append(len(live))
        return counts

    def running_counts(self) -> list[int]:
        """How many non-terminating pods existed after each event."""
        state: dict[str, bool] = {}
        counts = []
        for e in self.events:
            if e.type == "DELETED":
                state.pop(e.uid, None)
            else:
                state[e.uid] = not e.terminating
            counts.append(sum(state.values()))
        return counts

    def uids(self) -> list[str]:
        seen: list[str] = []
        for e in self.events:
            if e.uid not in seen:
                seen.append(e.uid)
        return seen


@contextlib.contextmanager
def running_operator(namespace: str, kubeconfig: Path, log_path: Path,
                     **kw: Any) -> Iterator[OperatorProcess]:
    op = OperatorProcess(namespace=namespace, kubeconfig=kubeconfig, log_path=log_path,
                         **kw).start()
    try:
        yield op
    finally:
        op.stop()
