"""Kubernetes plumbing for the benchmarks: a fresh local control plane (cleaned up completely,
hostPath volumes included), namespaces, the operator as a child process, raw watches that note
when each event arrived, and the operator's request log."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import REPO, Child, log, python_env, wait_until
from devcluster.cluster import LocalCluster
from tests.support.net import free_port, http_status
from wabot.spec import API_GROUP, API_VERSION, PLURAL

CRDS = REPO / "crds"
BOT_LABEL = "wabot.io/bot"
HOSTPATH_ROOT = "/tmp/hostpath_pv"


# kube-controller-manager and kube-scheduler throttle their own API clients (20 and 50
# requests/s by default). The controller-manager's PV controller needs several requests per
# volume, so it provisions ~5 auth volumes a second and a bot's pod is not scheduled before its
# PVC is bound: that, not the operator, would decide how fast 1,000 bots start. The tuned
# control plane lifts both limits; the stock one is measured too (--stock-control-plane).
TUNED_FLAGS: dict[str, list[str]] = {
    "kube-controller-manager": ["--kube-api-qps=400", "--kube-api-burst=800"],
    "kube-scheduler": ["--kube-api-qps=400", "--kube-api-burst=800"],
}

# The auth volumes' StorageClass binds when the pod is scheduled, as the default classes of
# kind (local-path), GKE, EKS and AKS do (devcluster's default too; set here so the
# benchmark's condition does not follow a default). With an Immediate class a new bot's pod
# is unschedulable until its claim is bound, and the scheduler retried each of 1,000 such
# pods ~35 times while the PV controller caught up (kube-scheduler 12-14 ms of CPU per bot
# against 7 here; settled 69-73 s against 63-68 s in alternating runs, docs/benchmarks/operator.md).
VOLUME_BINDING_MODE = "WaitForFirstConsumer"


@dataclass
class TunedCluster(LocalCluster):
    """devcluster's LocalCluster, with extra flags for some of its processes."""

    extra_flags: dict[str, list[str]] = field(default_factory=dict)

    def _spawn(self, name: str, argv: list[str]) -> None:
        super()._spawn(name, [*argv, *self.extra_flags.get(name, [])])


class BenchCluster:
    """A LocalCluster with `nodes` kwok nodes, the CRDs installed, an admin client."""

    def __init__(self, nodes: int = 4, tuned: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wabot-bench-cluster-"))
        self.tuned = tuned
        self.cluster = TunedCluster(root=self.root / "cp", nodes=nodes,
                                    volume_binding_mode=VOLUME_BINDING_MODE,
                                    extra_flags=TUNED_FLAGS if tuned else {})
        self.api: Any = None
        self.started_s = 0.0

    def start(self) -> BenchCluster:
        from kubernetes import config

        t0 = time.monotonic()
        try:
            self.cluster.start()
            files = sorted(CRDS.glob("*.yaml"))
            for f in files:
                self.cluster.kubectl("apply", "--server-side", "--force-conflicts",
                                     "--field-manager=wabot-bench", "-f", str(f))
            self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                 *[a for f in files for a in ("-f", str(f))])
            self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig))
            self.api.configuration.connection_pool_maxsize = 64
            # new_client_from_config builds its pool before we can size it: rebuild it.
            from kubernetes.client import rest

            self.api.rest_client = rest.RESTClientObject(self.api.configuration)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        return self

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def stop(self) -> None:
        """Stop every process, remove the hostPath volumes this cluster provisioned, and the
        cluster's directory."""
        paths: list[str] = []
        with contextlib.suppress(Exception):
            if self.api is not None and self.cluster.pids:
                from kubernetes import client

                for pv in client.CoreV1Api(self.api).list_persistent_volume().items:
                    hp = pv.spec.host_path.path if pv.spec and pv.spec.host_path else None
                    if hp and hp.startswith(HOSTPATH_ROOT + "/"):
                        paths.append(hp)
        with contextlib.suppress(Exception):
            if self.api is not None:
                self.api.close()
        self.cluster.stop()
        for p in paths:
            shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- objects ---------------------------------------------------------------------------

    def namespace(self, name: str) -> str:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, annotations={"wabot.io/tenants": "*"},
            labels={"pod-security.kubernetes.io/enforce": "restricted",
                               "pod-security.kubernetes.io/enforce-version": "latest"})))

        def has_sa() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
                return True
            except client.exceptions.ApiException:
                return False

        wait_until(has_sa, 60, f"the default ServiceAccount of {name}", interval=0.2)
        return name

    def create_bot(self, namespace: str, name: str, spec: dict[str, Any] | None = None) -> None:
        from kubernetes import client

        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "WhatsAppBot",
                "metadata": {"name": name}, "spec": {"serverName": "acme", **(spec or {})}}
        # The answer is not decoded (the benchmark's client would spend CPU the operator's
        # run does not need), but it is read to the end, so the connection goes back to the
        # pool: an unread answer kept its connection, and every create opened a new one (a
        # TLS handshake on both sides, ~1,000 per 1,000 bots, only in the operator's run).
        answer = client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, body, _preload_content=False)
        answer.drain_conn()


# --- the operator ---------------------------------------------------------------------------


@dataclass
class Operator:
    """`python -m wabot_operator` (unchanged) watching one namespace, its API requests counted
    by bench/_hooks/sitecustomize.py."""

    kubeconfig: Path
    namespace: str
    workdir: Path
    image: str = "registry.invalid/wabot-worker:bench"
    proc: Child | None = None
    health_port: int = 0
    metrics_port: int = 0
    request_log: Path = field(default_factory=lambda: Path("/dev/null"))
    cpu_at_ready: float = 0.0
    rss_at_ready_mb: float = 0.0
    # A directory holding another `wabot_operator` package to run instead of the repo's
    # (what-if experiments; `python -m bench --operator-path DIR`).
    package_dir: Path | None = None

    def start(self, tag: str) -> Operator:
        from bench.common import cpu_seconds, proc_status

        self.health_port, self.metrics_port = free_port(), free_port()
        self.request_log = self.workdir / f"requests-{tag}.jsonl"
        env = python_env({
            "KUBECONFIG": str(self.kubeconfig),
            "WABOT_OPERATOR_NAMESPACES": self.namespace,
            "WABOT_OPERATOR_STANDALONE": "true",
            "WABOT_OPERATOR_HEALTH_PORT": str(self.health_port),
            "WABOT_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "WABOT_OPERATOR_WORKER_IMAGE": self.image,
            "WABOT_OPERATOR_LOG_LEVEL": "INFO",
            "WABOT_BENCH_REQUEST_LOG": str(self.request_log),
        }, hooks=True)
        if self.package_dir is not None:
            env["PYTHONPATH"] = f"{self.package_dir}:{env['PYTHONPATH']}"
            env["WABOT_OPERATOR_TEMPLATES_DIR"] = str(REPO / "operator" / "bot-templates")
        import sys

        self.proc = Child([sys.executable, "-m", "wabot_operator"], env=env, cwd=REPO,
                          log=self.workdir / f"operator-{tag}.log")
        wait_until(self.healthy, 90, "the operator's /healthz", interval=0.2)
        wait_until(self.watching, 60, "the operator's watches of bots and pods", interval=0.2)
        self.cpu_at_ready = cpu_seconds(self.proc.pid)
        self.rss_at_ready_mb = proc_status(self.proc.pid)["VmRSS"] / 1024
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise RuntimeError(f"the operator exited:\n{self.proc.tail()}")
        return http_status(f"http://127.0.0.1:{self.health_port}/healthz") == 200

    def watching(self) -> bool:
        """kopf answers /healthz before its watches are open. On a control plane started
        seconds ago the first LIST of WhatsAppBots can take seconds (the CRD's watch cache is
        still filling: a 429 "storage is (re)initializing" and kopf's 1 s back-off), and the
        first bots of a run waited for that: the apply -> pod of the first ten of 100 was
        1.2-2.5 s, every later one 0.1-0.4 s. A run starts once both watches are open (the
        request log counts a watch when it is opened; it is written once a second)."""
        opened = {key for counts in read_requests(self.request_log).values() for key in counts}
        return {"kopf WATCH whatsappbots", "kopf WATCH pods"} <= opened

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(40.0)


def read_requests(path: Path, since: float = 0.0, until: float = float("inf")
                  ) -> dict[int, dict[str, float]]:
    """{unix second: {key: count, "ms " + key: summed ms}} from an operator's request log."""
    out: dict[int, dict[str, float]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        t = int(rec["t"])
        if since - 1 < t <= until:
            bucket = out.setdefault(t, {})
            for k, v in rec["n"].items():
                bucket[k] = bucket.get(k, 0) + int(v)
            for k, v in (rec.get("ms") or {}).items():
                bucket["ms " + k] = bucket.get("ms " + k, 0) + float(v)
    return out


def request_summary(per_second: dict[int, dict[str, float]], *, exclude_watch: bool = True
                    ) -> dict[str, Any]:
    """Total, peak per second, mean latency and counts by key; watches (long-lived streams)
    left out of the rates."""
    totals: dict[str, int] = {}
    series: dict[int, int] = {}
    took_ms = 0.0
    for t, counts in per_second.items():
        for k, v in counts.items():
            if k.startswith("ms "):
                took_ms += v
                continue
            totals[k] = totals.get(k, 0) + int(v)
            if exclude_watch and " WATCH " in k:
                continue
            series[t] = series.get(t, 0) + int(v)
    total = sum(series.values())
    span = (max(series) - min(series) + 1) if series else 0
    return {
        "total": total,
        "peak_per_s": max(series.values()) if series else 0,
        "mean_per_s_while_active": total / span if span else 0.0,
        "active_seconds": span,
        "mean_latency_ms": took_ms / total if total else None,
        "by_key": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
        "series": {str(k): series[k] for k in sorted(series)},
    }


# --- watches --------------------------------------------------------------------------------


class Watch:
    """A raw watch (JSON lines, no model deserialization) from a listed resourceVersion; calls
    `on_event(arrived_monotonic, type, object)` for every event, in order, resuming after the
    server's timeout. The list's items are delivered first as type "EXISTING"."""

    def __init__(self, api: Any, path: str, params: dict[str, str],
                 on_event: Callable[[float, str, dict[str, Any]], None]) -> None:
        self.api = api
        self.path = path
        self.params = params
        self.on_event = on_event
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch{path}", daemon=True)
        self._resp: Any = None

    def __enter__(self) -> Watch:
        self._thread.start()
        if not self._ready.wait(30) or self.error is not None:
            raise RuntimeError(f"watch {self.path} did not start: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            # Interrupt the blocking read of the stream (urllib3 2.x), then drop the socket.
            with contextlib.suppress(Exception):
                resp.shutdown()
            with contextlib.suppress(Exception):
                resp.close()
        self._thread.join(10)

    def _get(self, params: dict[str, str], stream: bool) -> Any:
        import urllib3

        host = self.api.configuration.host
        url = f"{host}{self.path}?{urlencode(params)}"
        return self.api.rest_client.pool_manager.request(
            "GET", url, headers={"Accept": "application/json"}, preload_content=not stream,
            timeout=urllib3.Timeout(connect=10, read=None if stream else 60))

    def _run(self) -> None:
        try:
            listed = json.loads(self._get(self.params, stream=False).data)
            now = time.monotonic()
            for item in listed.get("items") or []:
                self.on_event(now, "EXISTING", item)
            rv = listed["metadata"]["resourceVersion"]
            self._ready.set()
            while not self._stop.is_set():
                params = {**self.params, "watch": "true", "resourceVersion": rv,
                          "allowWatchBookmarks": "true", "timeoutSeconds": "120"}
                self._resp = self._get(params, stream=True)
                buf = b""
                for chunk in self._resp.stream(65536):
                    if self._stop.is_set():
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        arrived = time.monotonic()
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if ev.get("type") != "BOOKMARK":
                            self.on_event(arrived, str(ev.get("type")), obj)
                self._resp.release_conn()
        except BaseException as e:
            if not self._stop.is_set():
                self.error = e
            self._ready.set()


@dataclass
class PodLife:
    name: str
    uid: str
    added: float
    running: float | None = None
    deleted: float | None = None
    terminating: float | None = None


class FleetObserver:
    """Every bot pod and every bot status change in one namespace, with arrival times."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.lock = threading.Lock()
        self.pods: dict[str, PodLife] = {}  # by uid
        self.phases: dict[str, list[tuple[float, str]]] = {}  # bot -> every (arrived, phase)
        self.bots_seen: set[str] = set()
        ns = namespace
        self._watches = [
            Watch(api, f"/api/v1/namespaces/{ns}/pods", {"labelSelector": BOT_LABEL},
                  self._pod),
            Watch(api, f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{ns}/{PLURAL}", {},
                  self._bot),
        ]

    def __enter__(self) -> FleetObserver:
        for w in self._watches:
            w.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self._watches:
            w.__exit__(*exc)

    def check(self) -> None:
        for w in self._watches:
            if w.error is not None:
                raise RuntimeError(f"watch failed: {w.error!r}")

    def _pod(self, arrived: float, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid", "")
        with self.lock:
            life = self.pods.get(uid)
            if life is None:
                life = self.pods[uid] = PodLife(meta.get("name", ""), uid, arrived)
            if kind == "DELETED":
                life.deleted = arrived
                return
            if meta.get("deletionTimestamp") and life.terminating is None:
                life.terminating = arrived
            phase = (obj.get("status") or {}).get("phase")
            if phase == "Running" and life.running is None and not meta.get("deletionTimestamp"):
                life.running = arrived

    def _bot(self, arrived: float, kind: str, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        phase = (obj.get("status") or {}).get("phase")
        with self.lock:
            self.bots_seen.add(name)
            # Every status seen, not only changes: after a restart the phase may well go
            # Connecting -> Connecting, with the new pod.
            self.phases.setdefault(name, []).append((arrived, str(phase or "")))

    # --- questions ------------------------------------------------------------------------

    def live_pods(self, after: float = 0.0) -> dict[str, PodLife]:
        """Bot name -> its newest pod first seen after `after` (not deleted)."""
        out: dict[str, PodLife] = {}
        with self.lock:
            for life in self.pods.values():
                if life.deleted is not None or life.added < after:
                    continue
                bot = life.name.removeprefix("wabot-")
                if bot not in out or out[bot].added < life.added:
                    out[bot] = life
        return out

    def settled(self, bots: list[str], after: float = 0.0) -> float | None:
        """When every bot had a Running pod first seen after `after` and its latest status
        says Connecting; None while not yet. After a restart the status may say Connecting
        throughout (the operator holds back a Pending that would last only moments, and paces
        the others): then the pod's Running is the moment; a status written after the pod was
        created counts from when it arrived (the two watches are separate streams, so a
        status may arrive before the pod event that caused it)."""
        pods = self.live_pods(after)
        latest = 0.0
        with self.lock:
            for bot in bots:
                life = pods.get(bot)
                history = self.phases.get(bot) or []
                if life is None or life.running is None or not history:
                    return None
                when, phase = history[-1]
                if phase != "Connecting":
                    return None
                latest = max(latest, life.running, when if when >= life.added else 0.0)
        return latest

    def unsettled(self, bots: list[str], after: float = 0.0, limit: int = 5) -> list[str]:
        """Why bots are not settled, for the record when a run times out."""
        pods = self.live_pods(after)
        out: list[str] = []
        with self.lock:
            for bot in bots:
                life = pods.get(bot)
                history = self.phases.get(bot) or []
                ok = (life is not None and life.running is not None and history
                      and history[-1][1] == "Connecting")
                if not ok:
                    pod = "no pod" if life is None else (
                        "pod Running" if life.running else "pod not Running")
                    phases = [p for _, p in history][-4:]
                    out.append(f"{bot}: {pod}, phases {phases}")
                if len(out) >= limit:
                    break
        return out


@contextlib.contextmanager
def bench_cluster(nodes: int, tuned: bool = True) -> Iterator[BenchCluster]:
    log(f"starting a local control plane ({nodes} kwok nodes)")
    c = BenchCluster(nodes, tuned).start()
    log(f"control plane up in {c.started_s:.1f}s")
    try:
        yield c
    finally:
        c.stop()


def apiserver_latency(api: Any) -> dict[str, tuple[float, float]]:
    """{verb resource: (count, summed seconds)} from the API server's own
    apiserver_request_duration_seconds (what it spent per request, server side)."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = api.rest_client.pool_manager.request("GET", f"{api.configuration.host}/metrics",
                                                timeout=30)
    out: dict[str, list[float]] = {}
    for fam in text_string_to_metric_families(resp.data.decode()):
        if fam.name != "apiserver_request_duration_seconds":
            continue
        for s in fam.samples:
            if s.name.endswith("_count") or s.name.endswith("_sum"):
                verb = s.labels.get("verb", "")
                if verb in ("WATCH", "CONNECT"):
                    continue
                res = s.labels.get("resource", "") + (
                    "/" + s.labels["subresource"] if s.labels.get("subresource") else "")
                key = f"{verb} {res}"
                slot = out.setdefault(key, [0.0, 0.0])
                slot[0 if s.name.endswith("_count") else 1] += float(s.value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def latency_delta(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
                  ) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for k, (n, s) in after.items():
        n0, s0 = before.get(k, (0.0, 0.0))
        if n - n0 > 0:
            out[k] = {"count": n - n0, "mean_ms": (s - s0) / (n - n0) * 1000}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["count"]))
