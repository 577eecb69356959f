"""Density: the memory of one idle bot.

The worker runs exactly as in production (`python -m wabot worker`, one bot in one OS process)
with WhatsApp unreachable: neonize fails to dial and the worker retries with backoff. Its VmRSS
is read from /proc after the first connect attempt has failed, HOLD seconds after start. The
spec comes from a file (`WABOT_SPEC_SOURCE=file:`), the database is SQLite beside the session
or PostgreSQL (DATABASE_URL), and, when a control plane is at hand, the real production source
`WABOT_SPEC_SOURCE=kubernetes` (get + watch of its WhatsAppBot, Lease, status reports).

Baseline in the same run: Node.js holding one Baileys socket (`bench/baileys/idle-socket.mjs`,
the seed's stack), VmRSS after the same HOLD.

The container: `localhost/wabot-worker:test` run hardened as Kubernetes runs it (read-only,
uid 10001, no capabilities), its process VmRSS and its cgroup's memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
    REPO,
    Child,
    Result,
    at_most,
    log,
    proc_status,
    pss_mb,
    python_env,
    ratio,
    wait_until,
)
from tests.support.net import free_port

TARGET_MB = 90.0
IMAGE = "localhost/wabot-worker:test"
COMMAND_HOOKS = BENCH / "_command_hooks"
# After the idle reading: a command every bot answers (its audit row loads SQLAlchemy Core
# and the driver), then a database command (an ORM session: sqlmodel too).
WORKED = ("!ping", "!note k v")
PODMAN_RUNTIME = ["--runtime", "/usr/sbin/runc", "--ulimit", "nofile=1024:1024",
                  "--ulimit", "nproc=4096:4096"]
# tests/packaging/test_images.py: how Kubernetes runs the container (auth-templates/pod.yaml).
HARDENED = ["--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]


def _first_dial_failed(log_path: Path) -> bool:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if '"SessionEnded"' in line and '"to": "Disconnected"' in line:
            return True
    return False


def _dial_attempts(log_path: Path) -> int:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return 0
    return text.count('"msg": "connecting to WhatsApp"')


def sample_rss(pid: int, started: float, hold_s: float, every_s: float = 0.5
               ) -> dict[str, Any]:
    """VmRSS every `every_s` until `hold_s` after `started`: the value at the end (rss_mb),
    and the lowest and highest seen over the second half of the hold."""
    seen: list[tuple[float, float]] = []
    while True:
        t = time.monotonic() - started
        seen.append((t, proc_status(pid)["VmRSS"] / 1024))
        if t >= hold_s:
            break
        time.sleep(min(every_s, max(0.0, hold_s - t)))
    late = [v for t, v in seen if t >= hold_s / 2] or [seen[-1][1]]
    return {"rss_mb": seen[-1][1], "rss_min_mb": min(late), "rss_max_mb": max(late),
            "held_s": round(seen[-1][0], 1)}


def _worked(proc: Child, commands: Sequence[str], hold_s: float, workdir: Path, variant: str,
            env: dict[str, str]) -> list[dict[str, Any]]:
    """One command at a time through the worker's own pipeline (bench/_command_hooks), then
    its memory `hold_s` after the command has been handled and its audit row written."""
    out = []
    for n, text in enumerate(commands, start=1):
        done = Path(f"{env['WABOT_BENCH_COMMAND_DONE']}.{n}")
        Path(f"{env['WABOT_BENCH_COMMAND_TRIGGER']}.{n}").touch()
        wait_until(lambda done=done: done.exists() or not proc.alive(), 90,
                   f"{text!r} handled by the {variant} worker")
        if not proc.alive():
            raise RuntimeError(f"the {variant} worker exited:\n{proc.tail()}")
        handled = json.loads(done.read_text())
        if handled.get("error") or handled.get("handled", 0) < 1 or handled.get("audit_pending"):
            raise RuntimeError(f"{text!r} in the {variant} worker: {handled}")
        out.append({"command": text, **handled,
                    **sample_rss(proc.pid, time.monotonic(), hold_s)})
    return out


def measure_worker(variant: str, env_extra: dict[str, str], hold_s: float,
                   workdir: Path, commands: Sequence[str] = ()) -> dict[str, Any]:
    """Start a worker, let it fail its first dial, read its memory `hold_s` after start; then,
    for each of `commands`, have it handle that command and read its memory again."""
    auth = workdir / f"auth-{variant}"
    auth.mkdir(parents=True, exist_ok=True)
    spec = workdir / f"spec-{variant}.yaml"
    # Rate limits are irrelevant here; a plain spec as a tenant would write it (with the
    # database plugin when a database command is to run).
    plugins = "commands: {plugins: [notes]}\n" if any("!note" in c for c in commands) else ""
    spec.write_text(f"serverName: acme\nbotId: demo\n{plugins}")
    env = python_env({
        "BOT_ID": "demo", "SERVER_NAME": "acme", "AUTH_DIR": str(auth),
        "HTTP_PORT": str(free_port()), "HTTP_HOST": "127.0.0.1", "POD_NAME": "bench-density",
        "WABOT_SPEC_SOURCE": f"file:{spec}", "LOG_LEVEL": "INFO",
        **env_extra,
    })
    if commands:
        env.update({"PYTHONPATH": f"{COMMAND_HOOKS}{os.pathsep}{env['PYTHONPATH']}",
                    "WABOT_BENCH_COMMANDS": ";".join(commands),
                    "WABOT_BENCH_COMMAND_TRIGGER": str(workdir / f"command-{variant}"),
                    "WABOT_BENCH_COMMAND_DONE": str(workdir / f"handled-{variant}")})
    log_path = workdir / f"worker-{variant}.log"
    proc = Child([_python(), "-m", "wabot", "worker"], env=env, cwd=REPO, log=log_path)
    started = time.monotonic()
    try:
        wait_until(lambda: _first_dial_failed(log_path) or not proc.alive(), 60,
                   f"the first failed dial of the {variant} worker")
        if not proc.alive():
            raise RuntimeError(f"the {variant} worker exited:\n{proc.tail()}")
        dial_s = time.monotonic() - started
        samples = sample_rss(proc.pid, started, hold_s)
        st = proc_status(proc.pid)
        out = {
            "variant": variant,
            **samples,
            "hwm_mb": st["VmHWM"] / 1024,
            "rss_anon_mb": st.get("RssAnon", 0) / 1024,
            "rss_file_mb": st.get("RssFile", 0) / 1024,
            "pss_mb": pss_mb(proc.pid),
            "threads": st.get("Threads"),
            "first_dial_failed_after_s": round(dial_s, 2),
            "dial_attempts": _dial_attempts(log_path),
        }
        if commands:
            out["after_commands"] = _worked(proc, commands, hold_s, workdir, variant, env)
    finally:
        proc.stop()
    return out


@contextlib.contextmanager
def kubernetes_worker_env() -> Iterator[dict[str, str]]:
    """A local control plane holding bot `demo` and its Lease, and the worker environment
    that reads them (the production spec source; admin credentials instead of the bot's
    ServiceAccount token, the code path is the same). Stopped on exit."""
    from kubernetes import client

    from bench.kube import BenchCluster

    cluster = BenchCluster(nodes=1)
    try:
        cluster.start()
        ns = cluster.namespace("bench-density")
        cluster.create_bot(ns, "demo")
        client.CoordinationV1Api(cluster.api).create_namespaced_lease(
            ns, client.V1Lease(metadata=client.V1ObjectMeta(name="wabot-demo"),
                               spec=client.V1LeaseSpec()))
        yield {"KUBECONFIG": str(cluster.kubeconfig), "WABOT_SPEC_SOURCE": "kubernetes",
               "WABOT_NAMESPACE": ns, "WABOT_BOT_NAME": "demo",
               "WABOT_LEASE_NAME": "wabot-demo"}
    finally:
        cluster.stop()


def measure_worker_kubernetes(hold_s: float, workdir: Path) -> dict[str, Any]:
    """The production spec source: the worker reads and watches its WhatsAppBot, holds its
    Lease and reports status, against a local control plane."""
    with kubernetes_worker_env() as env:
        return measure_worker("kubernetes", env, hold_s, workdir)


def _python() -> str:
    import sys

    return sys.executable


def measure_baileys(hold_s: float, workdir: Path) -> dict[str, Any]:
    folder = BENCH / "baileys"
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed (apt-get install nodejs npm)")
    if not (folder / "node_modules" / "baileys").is_dir():
        log("installing the Baileys baseline (npm install in bench/baileys)")
        out = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=folder,
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"npm install failed: {out.stderr[-2000:]}")
    auth = workdir / "baileys-auth"
    # Measured from outside, like the worker: the script would print its own VmRSS at HOLD_MS,
    # here it is held longer and sampled. V8 runs a major GC some 15 s after start, which takes
    # the socket from ~114 to ~94 MiB: the hold must cover it.
    env = {**python_env(), "HOLD_MS": str(int((hold_s + 30) * 1000))}
    proc = Child(["node", "idle-socket.mjs", str(auth)], env=env, cwd=folder,
                 log=workdir / "baileys.log")
    started = time.monotonic()
    try:
        time.sleep(1.0)
        if not proc.alive():
            raise RuntimeError(f"idle-socket.mjs exited: {proc.tail()}")
        samples = sample_rss(proc.pid, started, hold_s)
    finally:
        proc.stop()
    version = "?"
    try:
        pkg = json.loads((folder / "node_modules" / "baileys" / "package.json").read_text())
        version = str(pkg.get("version"))
    except (OSError, ValueError):
        pass
    return {**samples, "baileys": version}


# --- the container --------------------------------------------------------------------------


def image_exists(image: str = IMAGE) -> bool:
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", image],
                          capture_output=True).returncode == 0


def build_image() -> None:
    log("building the worker image (images/build.sh worker test); this takes minutes")
    out = subprocess.run(["bash", str(REPO / "images" / "build.sh"), "worker", "test"],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"images/build.sh failed: {out.stderr[-3000:]}")


def _podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {args[0]} failed: {out.stderr[-2000:]}")
    return out.stdout


def _cgroup_memory(cgroup_path: str) -> dict[str, float]:
    """cgroup v1 (this machine) or v2 memory of the container, in MB."""
    out: dict[str, float] = {}
    v1 = Path("/sys/fs/cgroup/memory") / cgroup_path.lstrip("/")
    v2 = Path("/sys/fs/cgroup") / cgroup_path.lstrip("/")
    if (v1 / "memory.usage_in_bytes").exists():
        out["cgroup_usage_mb"] = int((v1 / "memory.usage_in_bytes").read_text()) / 1048576
        stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
        out["cgroup_rss_mb"] = int(stat.get("total_rss", stat.get("rss", 0))) / 1048576
        out["cgroup_cache_mb"] = int(stat.get("total_cache", stat.get("cache", 0))) / 1048576
    elif (v2 / "memory.current").exists():
        out["cgroup_usage_mb"] = int((v2 / "memory.current").read_text()) / 1048576
        stat = dict(line.split() for line in (v2 / "memory.stat").read_text().splitlines())
        out["cgroup_rss_mb"] = int(stat.get("anon", 0)) / 1048576
        out["cgroup_cache_mb"] = int(stat.get("file", 0)) / 1048576
    return out


def measure_container(hold_s: float, workdir: Path) -> dict[str, Any]:
    auth = workdir / "container-auth"
    auth.mkdir(parents=True, exist_ok=True)
    shutil.chown(auth, 10001, 10001)
    spec = workdir / "container-spec.yaml"
    spec.write_text("serverName: acme\nbotId: demo\n")
    spec.chmod(0o644)
    name = f"wabot-bench-density-{uuid.uuid4().hex[:8]}"
    port = free_port()
    image_id = _podman("image", "inspect", "--format", "{{.Id}} {{.Created}}", IMAGE).strip()
    _podman("run", "-d", "--name", name, *PODMAN_RUNTIME, *HARDENED, "--network=host",
            "-v", f"{auth}:/var/lib/wabot:rw", "-v", f"{spec}:/etc/wabot/spec.yaml:ro",
            "-e", "BOT_ID=demo", "-e", "SERVER_NAME=acme", "-e", f"HTTP_PORT={port}",
            "-e", "HTTP_HOST=127.0.0.1", "-e", "WABOT_SPEC_SOURCE=file:/etc/wabot/spec.yaml",
            IMAGE)
    started = time.monotonic()
    try:
        def dialed() -> bool:
            state = _podman("inspect", "--format", "{{.State.Running}}", name).strip()
            if state != "true":
                raise RuntimeError(f"the container exited: {_podman('logs', name, check=False)}")
            logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
            return '"SessionEnded"' in logs.stderr + logs.stdout

        wait_until(dialed, 90, "the container's first failed dial", interval=0.5)
        pid = int(_podman("inspect", "--format", "{{.State.Pid}}", name).strip())
        samples = sample_rss(pid, started, hold_s)
        cgroup = _podman("inspect", "--format", "{{.State.CgroupPath}}", name).strip()
        out: dict[str, Any] = {
            "image": IMAGE, "image_id_created": image_id,
            "process_rss_mb": samples["rss_mb"], "process_rss_max_mb": samples["rss_max_mb"],
            "process_pss_mb": pss_mb(pid),
            **_cgroup_memory(cgroup),
        }
        stats = json.loads(_podman("stats", "--no-stream", "--format", "json", name))
        if stats:
            out["podman_stats_mem_usage"] = stats[0].get("mem_usage")
    finally:
        _podman("rm", "-f", "-t", "5", name, check=False)
    return out


# --- the benchmark ----------------------------------------------------------------------------


def run(*, hold_s: float = 10.0, pg_dsn: str | None = None, with_image: bool = False,
        container: bool = True, kubernetes: bool = True) -> Result:
    res = Result("density", "Density: RSS of one idle bot (after a failed connect attempt)")
    res.note(f"VmRSS from /proc/<pid>/status, sampled every 0.5 s; the value {hold_s:.0f} s "
             "after start is the one compared (and the highest of the second half against "
             "90 MB), after the worker's first dial to WhatsApp failed (unreachable here) and "
             "while it retries with backoff. Worker: `python -m wabot worker`, "
             "WABOT_SPEC_SOURCE=file:<spec> (and "
             "=kubernetes against a local control plane: get + watch of its WhatsAppBot, its "
             "Lease, status reports - the production configuration); Baileys: `node "
             "bench/baileys/idle-socket.mjs`, same hold. The file-spec workers then handle "
             "`!ping` and then `!note k v`, fed as real MessageEv through their own client's "
             "dispatcher (bench/_command_hooks; replies dropped, WhatsApp is unreachable), "
             "and are read again the same hold after each: the memory of a bot that has "
             "worked, which loads the database layer on its first audit row.")
    with tempfile.TemporaryDirectory(prefix="wabot-bench-density-") as tmp:
        work = Path(tmp)
        variants: list[tuple[str, dict[str, str]]] = [("sqlite", {})]
        if pg_dsn:
            variants.append(("postgres", {"DATABASE_URL": pg_dsn}))
        workers: dict[str, dict[str, Any]] = {}
        for variant, env in variants:
            log(f"density: worker ({variant})")
            workers[variant] = measure_worker(variant, env, hold_s, work, commands=WORKED)
        if kubernetes:
            log("density: worker (kubernetes spec source, local control plane)")
            try:
                workers["kubernetes"] = measure_worker_kubernetes(hold_s, work)
            except Exception as exc:
                res.note(f"kubernetes variant failed: {exc}")
        log("density: Baileys baseline")
        baileys = measure_baileys(hold_s, work)
        res.extra["workers"] = workers
        res.extra["baileys"] = baileys
        b = baileys["rss_mb"]
        res.add("Baileys (Node, 1 socket) RSS", b, "MiB",
                note=f"baileys {baileys['baileys']}; {baileys['rss_min_mb']:.1f}-"
                f"{baileys['rss_max_mb']:.1f} MiB over the second half of the hold")
        for variant, w in workers.items():
            rss = w.get("rss_mb")
            label = {"sqlite": "file spec, SQLite", "postgres": "file spec, PostgreSQL",
                     "kubernetes": "kubernetes spec source, SQLite (production)"}.get(
                         variant, variant)
            res.add(f"worker RSS ({label})", rss, "MiB", target=f"<= {TARGET_MB:.0f} MB and < "
                    "Baileys", met=None if rss is None else (
                        w.get("rss_max_mb", rss) <= TARGET_MB and rss < b),
                    note=f"{w.get('rss_min_mb', 0):.1f}-{w.get('rss_max_mb', 0):.1f} MiB over "
                    f"the second half; PSS {w.get('pss_mb') or 0:.1f}, anon "
                    f"{w.get('rss_anon_mb', 0):.1f}, file {w.get('rss_file_mb', 0):.1f} MiB; "
                    f"{w.get('threads')} threads, {w.get('dial_attempts')} dials")
            res.add(f"ratio worker/Baileys ({label})", ratio(rss, b), "x",
                    target="< 1", met=None if rss is None else rss < b)
            for worked in w.get("after_commands", []):
                what = ("its first command (an audit row)" if worked["command"] == WORKED[0]
                        else f"a database command ({worked['command'].split()[0]})")
                res.add(f"  same worker after {what}", worked["rss_mb"], "MiB",
                        note=f"{worked['rss_min_mb']:.1f}-{worked['rss_max_mb']:.1f} MiB over "
                        f"the second half of {hold_s:.0f} s after it; not idle, so outside "
                        "the target")
        if with_image and not image_exists():
            build_image()
        if not container:
            res.note("container not measured (container=False)")
        elif image_exists():
            log("density: worker container")
            try:
                c = measure_container(hold_s, work)
                res.extra["container"] = c
                res.add("worker container: process RSS", c["process_rss_mb"], "MiB",
                        target=f"<= {TARGET_MB:.0f} MB",
                        met=at_most(c["process_rss_mb"], TARGET_MB),
                        note=f"{IMAGE}, hardened flags of tests/packaging/test_images.py")
                if "cgroup_usage_mb" in c:
                    res.add("worker container: cgroup memory usage", c["cgroup_usage_mb"],
                            "MiB", note=f"rss {c.get('cgroup_rss_mb', 0):.1f} MB + page cache "
                            f"{c.get('cgroup_cache_mb', 0):.1f} MB; podman stats "
                            f"{c.get('podman_stats_mem_usage')}")
                res.add("ratio container process/Baileys", ratio(c["process_rss_mb"], b), "x")
            except Exception as exc:  # the rest of the benchmark still stands
                res.note(f"container measurement failed: {exc}")
                res.extra["container"] = {"error": str(exc)}
        else:
            res.note(f"image {IMAGE} not found (podman images): container not measured; "
                     "`python -m bench --with-image` builds it with images/build.sh")
            res.extra["container"] = {"missing": IMAGE}
    return res
