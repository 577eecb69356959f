"""Operator scale and fleet restart, on a fresh local control plane (devcluster: etcd,
kube-apiserver, controller-manager, scheduler, kwok with simulated nodes) per run.

Scale: N WhatsAppBots created by the benchmark's client, paced at 20/s or all at once (a
thread pool of 32), while the operator (`python -m wabot_operator`, a child process, standalone,
watching the run's namespace, production defaults otherwise) reconciles them. Measured from
two raw watches (pods, bots) in this process, by arrival time of each event:
- settled: from the first create until every bot's pod is Running and its status.phase says
  Connecting (the phase the operator writes once it has seen the Running pod; no worker runs
  on kwok, so no bot gets further);
- apply -> pod created: from sending the bot's create request to the arrival of its pod's
  ADDED event (p50/p99);
- operator RSS (VmRSS at the end, VmHWM = peak) and CPU seconds (utime+stime from
  /proc/<pid>/stat, from ready to settled);
- the operator's API requests, counted at its two HTTP clients (bench/_hooks).

Baseline in the same run: the same objects a bot owns (PVC, ServiceAccount, Role,
RoleBinding, Lease, Pod, rendered by the operator's own pure renderer, without owner
references) created by the benchmark's client directly, at the same pace, on a fresh control
plane of its own: what the API server, scheduler, controller-manager and kwok alone take.

Fleet restart (on the N-bot cluster of the last scale run): (a) every bot pod deleted at once
(one deletecollection by the benchmark), (b) a new worker image (the operator restarted with
another WABOT_OPERATOR_WORKER_IMAGE: every pod's spec hash changes, the operator replaces
every pod). Measured: the operator's API requests per second, time until every bot runs a new
pod again, and the rate new pods appear (each new pod is a worker dialling WhatsApp).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    Result,
    at_most,
    cpu_seconds,
    log,
    peak_rate,
    percentile,
    proc_status,
    ratio,
)
from bench.kube import (
    BOT_LABEL,
    BenchCluster,
    FleetObserver,
    Operator,
    read_requests,
    request_summary,
)

RATE = 20.0
BURST_THREADS = 32
NODES = 4


def apply_all(names: list[str], create: Callable[[str], None], mode: str
              ) -> dict[str, tuple[float, float]]:
    """Run `create(name)` for every name, paced at RATE/s or all at once; returns
    {name: (sent, done)} in time.monotonic()."""
    times: dict[str, tuple[float, float]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(name: str) -> None:
        sent = time.monotonic()
        try:
            create(name)
        except BaseException as e:
            errors.append(e)
            return
        with lock:
            times[name] = (sent, time.monotonic())

    threads = BURST_THREADS if mode == "burst" else 8
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-apply") as pool:
        t0 = time.monotonic()
        for i, name in enumerate(names):
            if mode == "rate":
                delay = t0 + i / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            pool.submit(one, name)
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]!r}")
    return times


def _raw_children(namespace: str, image: str) -> Callable[[str], list[dict[str, Any]]]:
    from wabot_operator.config import default_templates_dir
    from wabot_operator.specs.bot import BotRef, RenderDefaults
    from wabot_operator.specs.children import render_children
    from wabot_operator.templates import TemplateStore

    from wabot.spec import WhatsAppBotSpec

    directory = default_templates_dir()
    assert directory is not None
    templates = TemplateStore(directory).get()
    defaults = RenderDefaults(worker_image=image)
    spec = WhatsAppBotSpec(server_name="acme")

    def render(name: str) -> list[dict[str, Any]]:
        children = render_children(BotRef(name, namespace, str(uuid.uuid4())), spec, defaults,
                                   templates)
        objects = [*children.supporting(), children.pod]
        out = []
        for obj in objects:
            assert obj is not None
            obj = dict(obj)
            obj["metadata"] = {k: v for k, v in obj["metadata"].items()
                               if k != "ownerReferences"}
            out.append(obj)
        return out

    return render


def _wait_settled(obs: FleetObserver, names: list[str], timeout: float, after: float,
                  pods_only: bool) -> tuple[float | None, int]:
    deadline = time.monotonic() + timeout
    while True:
        obs.check()
        if pods_only:
            pods = obs.live_pods(after)
            running = [p.running for n in names if (p := pods.get(n)) and p.running]
            if len(running) == len(names):
                return max(running), len(names)
        else:
            when = obs.settled(names, after)
            if when is not None:
                return when, len(names)
        if time.monotonic() > deadline:
            pods = obs.live_pods(after)
            done = sum(1 for n in names if (p := pods.get(n)) and p.running)
            if not pods_only:
                log(f"  not settled after {timeout:.0f} s: {obs.unsettled(names, after)}")
            return None, done
        time.sleep(0.2)


def _control_plane_cpu(cluster: BenchCluster) -> float:
    """CPU seconds used so far by etcd, kube-apiserver, controller-manager, scheduler, kwok."""
    total = 0.0
    for pid in cluster.cluster.pids.values():
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def one_run(cluster: BenchCluster, n: int, mode: str, *, operator: bool, workdir: Path,
            keep: bool = False, package_dir: Path | None = None
            ) -> tuple[dict[str, Any], Operator | None, FleetObserver | None, str]:
    """One scale run; with `keep`, the operator and observer are returned still running."""
    ns = cluster.namespace(f"bench-{'op' if operator else 'raw'}-{mode}-{n}")
    names = [f"b{i:05d}" for i in range(n)]
    op: Operator | None = None
    obs = FleetObserver(cluster.api, ns)
    result: dict[str, Any] = {"n": n, "mode": mode, "kind": "operator" if operator else "raw"}
    ok = False
    try:
        if operator:
            op = Operator(cluster.kubeconfig, ns, workdir,
                          package_dir=package_dir).start(f"{mode}-{n}")
        obs.__enter__()
        if operator:
            def create(name: str) -> None:
                cluster.create_bot(ns, name)
        else:
            from wabot_operator.kube import Kube

            render = _raw_children(ns, "registry.invalid/wabot-worker:bench")
            kube = Kube(cluster.api)

            def create(name: str) -> None:
                for obj in render(name):
                    kube.create(obj)
        wall0 = time.time()
        cp_cpu0 = _control_plane_cpu(cluster)
        times = apply_all(names, create, mode)
        first = min(s for s, _ in times.values())
        apply_s = max(d for _, d in times.values()) - first
        timeout = max(120.0, n * 0.25)
        settled_at, done = _wait_settled(obs, names, timeout, 0.0, pods_only=not operator)
        cp_cpu = _control_plane_cpu(cluster) - cp_cpu0
        pods = obs.live_pods()
        lat = [(pods[nm].added - times[nm][0]) * 1000 for nm in names if nm in pods]
        created = [pods[nm].added for nm in names if nm in pods]
        result.update({
            "apply_s": apply_s,
            "settled_s": None if settled_at is None else settled_at - first,
            "settled_bots": done,
            "all_pods_created_s": (max(created) - first) if len(created) == n else None,
            "apply_to_pod_p50_ms": percentile(lat, 50),
            "apply_to_pod_p99_ms": percentile(lat, 99),
            "apply_to_pod_max_ms": max(lat) if lat else None,
            "pod_creation_peak_per_s": peak_rate(created),
            "control_plane_cpu_s": cp_cpu,
            "control_plane_cpu_ms_per_bot": cp_cpu / n * 1000,
        })
        if op is not None:
            st = proc_status(op.pid)
            result.update({
                "operator_rss_mb": st["VmRSS"] / 1024,
                "operator_peak_rss_mb": st["VmHWM"] / 1024,
                "operator_rss_idle_mb": op.rss_at_ready_mb,
                "operator_threads": st.get("Threads"),
                "operator_cpu_s": cpu_seconds(op.pid) - op.cpu_at_ready,
            })
            result["operator_cpu_ms_per_bot"] = result["operator_cpu_s"] / n * 1000
            time.sleep(1.5)  # the request log is flushed once a second
            reqs = request_summary(read_requests(op.request_log, wall0))
            result["operator_requests"] = reqs
            result["operator_requests_per_bot"] = reqs["total"] / n
        ok = True
        return result, op, obs, ns
    finally:
        if not (ok and keep):
            with contextlib.suppress(Exception):
                obs.__exit__(None, None, None)
            if op is not None:
                op.stop()


def restart_runs(cluster: BenchCluster, op: Operator, obs: FleetObserver, ns: str, n: int,
                 workdir: Path, package_dir: Path | None = None,
                 kinds: tuple[str, ...] = ("pods", "image")) -> dict[str, Any]:
    names = [f"b{i:05d}" for i in range(n)]
    out: dict[str, Any] = {}
    timeout = max(150.0, n * 0.4)

    if "pods" in kinds:
        out["pods_deleted"] = _restart_pods(cluster, op, obs, ns, names, timeout)
    if "image" in kinds:
        out["new_image"] = _restart_image(cluster, op, obs, ns, names, timeout, workdir,
                                          package_dir)
    return out


def _restart_pods(cluster: BenchCluster, op: Operator, obs: FleetObserver, ns: str,
                  names: list[str], timeout: float) -> dict[str, Any]:
    """(a) every pod deleted at once."""
    from kubernetes import client

    n = len(names)
    log(f"fleet restart (a): deleting all {n} bot pods")
    wall0 = time.time()
    t0 = time.monotonic()
    cpu0 = cpu_seconds(op.pid)
    client.CoreV1Api(cluster.api).delete_collection_namespaced_pod(
        ns, label_selector=BOT_LABEL, _preload_content=False).drain_conn()
    settled_at, done = _wait_settled(obs, names, timeout, t0, pods_only=False)
    time.sleep(1.5)
    pods = obs.live_pods(t0)
    starts = [p.running for p in pods.values() if p.running]
    return {
        "settled_s": None if settled_at is None else settled_at - t0,
        "settled_bots": done,
        "requests": request_summary(read_requests(op.request_log, wall0)),
        "new_pods_running_peak_per_s": peak_rate(starts),
        "pod_running_times_s": sorted(s - t0 for s in starts),
        "operator_cpu_s": cpu_seconds(op.pid) - cpu0,
        "operator_peak_rss_mb": proc_status(op.pid)["VmHWM"] / 1024,
    }


def _restart_image(cluster: BenchCluster, op: Operator, obs: FleetObserver, ns: str,
                   names: list[str], timeout: float, workdir: Path,
                   package_dir: Path | None) -> dict[str, Any]:
    """(b) a new worker image: the operator restarted with another default image."""
    n = len(names)
    log(f"fleet restart (b): operator restarted with a new worker image for {n} bots")
    op.stop()
    wall1 = time.time()
    t1 = time.monotonic()
    op2 = Operator(cluster.kubeconfig, ns, workdir, image="registry.invalid/wabot-worker:bench2",
                   package_dir=package_dir)
    try:
        op2.start(f"restart-{n}")
        ready_s = time.monotonic() - t1
        settled_at, done = _wait_settled(obs, names, timeout, t1, pods_only=False)
        time.sleep(1.5)
        pods = obs.live_pods(t1)
        starts = [p.running for p in pods.values() if p.running]
        st = proc_status(op2.pid)
        return {
            "operator_ready_s": ready_s,
            "settled_s": None if settled_at is None else settled_at - t1,
            "settled_bots": done,
            "requests": request_summary(read_requests(op2.request_log, wall1)),
            "new_pods_running_peak_per_s": peak_rate(starts),
            "pod_running_times_s": sorted(s - t1 for s in starts),
            "operator_cpu_s": cpu_seconds(op2.pid),
            "operator_rss_mb": st["VmRSS"] / 1024,
            "operator_peak_rss_mb": st["VmHWM"] / 1024,
        }
    finally:
        op2.stop()


def run(*, sizes: tuple[int, ...] = (100, 500, 1000), modes: tuple[str, ...] = ("rate", "burst"),
        restart_n: int | None = 1000, nodes: int = NODES, tuned: bool = True,
        operator_path: Path | None = None, restart_kinds: tuple[str, ...] = ("pods",),
        baseline: bool = True) -> tuple[Result, Result | None]:
    res = Result("operator", "Operator scale: N WhatsAppBots on a local control plane (kwok)")
    res.note("Each run on a fresh control plane (etcd, kube-apiserver, controller-manager, "
             f"scheduler, kwok with {nodes} simulated nodes) started by devcluster"
             + (", controller-manager and scheduler client limits raised to 400 requests/s "
                "(their defaults, 20 and 50, make the PV controller bind ~5 auth volumes a "
                "second: that, not the operator, would set the pace; see --stock-control-plane)"
                if tuned else ", stock settings") + ". The operator "
             "is `python -m wabot_operator` with production defaults (reconcile interval 60 s, "
             "INFO logs), standalone, scoped to the run's namespace; its API requests are "
             "counted at its HTTP clients (bench/_hooks/sitecustomize.py).")
    res.note("'settled' = every pod Running and every bot's status.phase = Connecting (written "
             "by the operator after it saw the Running pod), from the first create; apply -> "
             "pod = create request sent -> the pod's ADDED watch event arrived.")
    res.note("Baseline 'raw': the same objects per bot (PVC, SA, Role, RoleBinding, Lease, "
             "Pod from the operator's renderer) created by the benchmark client at the same "
             "pace, on a fresh control plane; settled = every pod Running.")
    if operator_path is not None:
        res.note(f"WHAT-IF: the operator package came from {operator_path}, not the repo.")
    runs: list[dict[str, Any]] = []
    restart_out: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="wabot-bench-operator-") as tmp:
        work = Path(tmp)
        last = (max(sizes), modes[-1]) if sizes else None

        def restart_on(cluster: BenchCluster, op: Operator, obs: FleetObserver, ns: str,
                       n: int) -> None:
            nonlocal restart_out
            try:
                restart_out = restart_runs(cluster, op, obs, ns, n, work, operator_path,
                                           restart_kinds)
                restart_out["n"] = n
            finally:
                with contextlib.suppress(Exception):
                    obs.__exit__(None, None, None)
                op.stop()

        for n in sizes:
            for mode in modes:
                for operator in ((False, True) if baseline else (True,)):
                    kind = "operator" if operator else "raw"
                    log(f"operator scale: {kind}, N={n}, {mode}")
                    cluster = BenchCluster(nodes, tuned)
                    keep = operator and restart_n == n and (n, mode) == last
                    try:
                        cluster.start()
                        r, op, obs, ns = one_run(cluster, n, mode, operator=operator,
                                                 workdir=work, keep=keep,
                                                 package_dir=operator_path)
                        r["control_plane_start_s"] = cluster.started_s
                        runs.append(r)
                        log(f"  settled in {_s(r['settled_s'])} s, apply -> pod p99 "
                            f"{_s(r['apply_to_pod_p99_ms'])} ms")
                        if keep and op is not None and obs is not None:
                            restart_on(cluster, op, obs, ns, n)
                    except Exception as e:
                        log(f"  run failed: {e!r}")
                        runs.append({"n": n, "mode": mode, "kind": kind, "error": repr(e)})
                        _log_tail(res, work, f"{mode}-{n}")
                    finally:
                        cluster.stop()
        if restart_n and restart_out is None:
            log(f"fleet restart: setting up {restart_n} bots (all at once)")
            cluster = BenchCluster(nodes, tuned)
            try:
                cluster.start()
                r, op, obs, ns = one_run(cluster, restart_n, "burst", operator=True,
                                         workdir=work, keep=True, package_dir=operator_path)
                if op is not None and obs is not None:
                    restart_on(cluster, op, obs, ns, restart_n)
                    if restart_out is not None:
                        restart_out["setup"] = r
            except Exception as e:
                log(f"  restart failed: {e!r}")
                restart_out = {"n": restart_n, "error": repr(e)}
                _log_tail(res, work, f"burst-{restart_n}")
            finally:
                cluster.stop()
    res.extra["runs"] = runs
    res.extra["tuned_control_plane"] = tuned
    _report(res, runs)
    rres: Result | None = None
    if restart_out is not None:
        rres = Result("restart", f"Fleet restart: {restart_out['n']} bots")
        rres.extra.update(restart_out)
        if "error" in restart_out:
            rres.error = restart_out["error"]
        else:
            _report_restart(rres, restart_out)
    return res, rres


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _log_tail(res: Result, work: Path, tag: str) -> None:
    for path in sorted(work.glob(f"operator-{tag}.log")):
        res.note(f"operator log tail ({tag}): "
                 f"{path.read_text(errors='replace')[-1500:]}")


def _find(runs: list[dict[str, Any]], n: int, mode: str, kind: str) -> dict[str, Any]:
    for r in runs:
        if r["n"] == n and r["mode"] == mode and r["kind"] == kind:
            return r
    return {}


def _report(res: Result, runs: list[dict[str, Any]]) -> None:
    sizes = sorted({r["n"] for r in runs})
    modes = [m for m in ("rate", "burst") if any(r["mode"] == m for r in runs)]
    for n in sizes:
        for mode in modes:
            label = f"N={n}, {'20/s' if mode == 'rate' else 'all at once'}"
            op = _find(runs, n, mode, "operator")
            raw = _find(runs, n, mode, "raw")
            if "error" in op:
                res.add(f"{label}: operator run failed", None, "", note=op["error"][:200])
                continue
            settled = op.get("settled_s")
            res.add(f"{label}: settled (operator)", settled, "s",
                    target="<= 60 s" if n == 1000 else None,
                    met=at_most(settled, 60.0) if n == 1000 else None,
                    note=f"{op.get('settled_bots')}/{n} bots; creates took "
                    f"{op.get('apply_s', 0):.1f} s")
            res.add(f"{label}: settled (raw baseline)", raw.get("settled_s"), "s")
            res.add(f"{label}: ratio settled operator/raw", ratio(settled, raw.get("settled_s")),
                    "x")
            p99 = op.get("apply_to_pod_p99_ms")
            res.add(f"{label}: apply -> pod p50 (operator)", op.get("apply_to_pod_p50_ms"), "ms")
            res.add(f"{label}: apply -> pod p99 (operator)", p99, "ms",
                    target="<= 1000 ms" if mode == "rate" else None,
                    met=at_most(p99, 1000.0) if mode == "rate" else None)
            res.add(f"{label}: apply -> pod p99 (raw baseline)", raw.get("apply_to_pod_p99_ms"),
                    "ms")
            res.add(f"{label}: ratio p99 operator/raw", ratio(p99, raw.get("apply_to_pod_p99_ms")),
                    "x")
            peak = op.get("operator_peak_rss_mb")
            res.add(f"{label}: operator peak RSS (VmHWM)", peak, "MiB", target="<= 150 MB",
                    met=at_most(peak, 150.0), note=f"VmRSS at the end "
                    f"{op.get('operator_rss_mb', 0):.1f} MiB, with no bot yet "
                    f"{op.get('operator_rss_idle_mb', 0):.1f} MiB; "
                    f"{op.get('operator_threads')} threads")
            res.add(f"{label}: operator CPU", op.get("operator_cpu_s"), "s",
                    note=f"{op.get('operator_cpu_ms_per_bot', 0):.0f} ms per bot")
            op_total = (op.get("operator_cpu_ms_per_bot") or 0) + (
                op.get("control_plane_cpu_ms_per_bot") or 0)
            res.add(f"{label}: CPU per bot, operator + control plane", op_total, "ms",
                    note=f"control plane {op.get('control_plane_cpu_ms_per_bot', 0):.0f} ms; "
                    "less sensitive to other load on the machine than the times")
            res.add(f"{label}: CPU per bot, raw baseline (control plane)",
                    raw.get("control_plane_cpu_ms_per_bot"), "ms")
            res.add(f"{label}: ratio CPU per bot operator/raw",
                    ratio(op_total, raw.get("control_plane_cpu_ms_per_bot")), "x")
            reqs = op.get("operator_requests") or {}
            res.add(f"{label}: operator API requests", reqs.get("total"), "req",
                    note=f"{op.get('operator_requests_per_bot', 0):.1f} per bot, peak "
                    f"{reqs.get('peak_per_s')}/s")


def _report_restart(res: Result, out: dict[str, Any]) -> None:
    n = out["n"]
    res.note("Requests counted at the operator's HTTP clients (watch streams excluded from the "
             "rates); peak = the busiest wall-clock second.")
    for key, label in (("pods_deleted", "all pods deleted"),
                       ("new_image", "new worker image (operator restarted)")):
        r = out.get(key)
        if not r:
            continue
        reqs = r["requests"]
        res.add(f"{label}: operator API requests peak", reqs["peak_per_s"], "req/s",
                target="<= 20/s", met=at_most(reqs["peak_per_s"], 20.0),
                note=f"{reqs['total']} requests over {reqs['active_seconds']} s")
        res.add(f"{label}: operator API requests mean", reqs["mean_per_s_while_active"],
                "req/s", target="<= 20/s", met=at_most(reqs["mean_per_s_while_active"], 20.0))
        res.add(f"{label}: every bot on a new Running pod after", r["settled_s"], "s",
                note=f"{r['settled_bots']}/{n} bots")
        res.add(f"{label}: new pods Running, peak", r["new_pods_running_peak_per_s"], "pods/s",
                note="each is a worker that dials WhatsApp on start")
        whose = ("the operator that set the fleet up, through the restart"
                 if key == "pods_deleted" else
                 f"a new operator process, started with the {n} bots and their pods in place")
        peak = r.get("operator_peak_rss_mb")
        res.add(f"{label}: operator peak RSS (VmHWM)", peak, "MiB", target="<= 150 MB",
                met=at_most(peak, 150.0), note=whose)
