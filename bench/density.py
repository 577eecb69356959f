"""Density: the memory of one bot, idle and after it has worked.

The worker runs exactly as in production (`python -m wabot worker`, one bot in one OS process)
with WhatsApp unreachable: neonize fails to dial and the worker retries with backoff. Its VmRSS
is read from /proc after the first connect attempt has failed, HOLD seconds after start. The
spec comes from a file (`WABOT_SPEC_SOURCE=file:`), the database is SQLite beside the session
or PostgreSQL (DATABASE_URL), and, when a control plane is at hand, the real production source
`WABOT_SPEC_SOURCE=kubernetes` (get + watch of its WhatsAppBot, Lease, status reports).

Baseline in the same run: Node.js holding one Baileys socket (`bench/baileys/idle-socket.mjs`,
the seed's stack), VmRSS after the same HOLD.

Then the same worker handles commands of every kind, one stage at a time, and 10,000 mixed
ones (bench/_command_hooks), and is read after each stage and every 1,000 mixed commands:
the memory of a bot that has worked, and whether it grows. Each worker runs in a memory cgroup
of its own (bench/cgroup.py), whose charge is printed beside VmRSS.

The container (bench/density_container.py): the worker image run hardened as Kubernetes runs
it, its process VmRSS and its cgroup's memory. Printing: bench/density_report.py; the targets,
stages and spec: bench/density_setup.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import density_container as dc
from bench import density_webhook
from bench.cgroup import MemoryCgroup
from bench.common import (
    BENCH,
    REPO,
    Child,
    Result,
    log,
    proc_status,
    pss_mb,
    python_env,
    wait_until,
)
from bench.density_report import report_container, report_workers
from bench.density_setup import (
    COMMAND_HOOKS,
    IMAGE,
    MEDIA_STAGES,
    MIXED_TEXTS,
    SPEC,
    STAGES,
    WEBHOOK_MIXED,
    sample_rss,
    worker_tuning,
)
from tests.support.net import free_port


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


def _reading(pid: int, hold_s: float, cgroup: MemoryCgroup | None) -> dict[str, Any]:
    """VmRSS over `hold_s` from now, and the cgroup's charge at the end of it."""
    out = sample_rss(pid, time.monotonic(), hold_s)
    if cgroup is not None:
        out.update(cgroup.read())
    return out


def _worked(proc: Child, stages: Sequence[Sequence[str]], hold_s: float, variant: str,
            env: dict[str, str], cgroup: MemoryCgroup | None) -> list[dict[str, Any]]:
    """One stage at a time through the worker's own pipeline (bench/_command_hooks), then
    its memory `hold_s` after the stage's commands were handled and their audit rows
    written."""
    out = []
    for n, texts in enumerate(stages, start=1):
        handled = _hook_answer(proc, env, str(n), f"{' | '.join(texts)!r}", variant, 90)
        if (handled.get("error") or handled.get("handled", 0) < handled.get("expected", 1)
                or handled.get("audit_pending")):
            raise RuntimeError(f"{texts!r} in the {variant} worker: {handled}")
        out.append({**handled, "texts": list(texts), **_reading(proc.pid, hold_s, cgroup)})
    return out


def _hook_answer(proc: Child, env: dict[str, str], stage: str, what: str, variant: str,
                 timeout_s: float) -> dict[str, Any]:
    done = Path(f"{env['WABOT_BENCH_COMMAND_DONE']}.{stage}")
    Path(f"{env['WABOT_BENCH_COMMAND_TRIGGER']}.{stage}").touch()
    wait_until(lambda: done.exists() or not proc.alive(), timeout_s,
               f"{what} handled by the {variant} worker")
    if not proc.alive():
        raise RuntimeError(f"the {variant} worker exited:\n{proc.tail()}")
    answer: dict[str, Any] = json.loads(done.read_text())
    return answer


def slope_per_1000(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (commands, MiB), in MiB per 1,000 commands."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return None if den == 0 else 1000 * sum((x - mx) * (y - my) for x, y in points) / den


def _mixed(proc: Child, env: dict[str, str], hold_s: float, variant: str,
           cgroup: MemoryCgroup | None) -> dict[str, Any]:
    """The mixed run: its progress readings (after every 1,000 commands), the slope over the
    whole run and over its second half, and a held reading at the end."""
    answer = _hook_answer(proc, env, "mixed", "the mixed commands", variant, 1800)
    if answer.get("error") or answer.get("handled", 0) < answer.get("commands", 1):
        raise RuntimeError(f"mixed run in the {variant} worker: {answer}")
    lines = Path(f"{env['WABOT_BENCH_COMMAND_DONE']}.mixed.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    # Caches that are bounded (recent messages, per-chat rate state, the allocator's pools)
    # fill during the first thousands; growth is what is left in the second half.
    late = [p for p in points if p["commands"] >= answer["commands"] / 2]
    return {**answer, "points": points,
            "slope_rss_mb_per_1000": slope_per_1000([(p["commands"], p["VmRSS"])
                                                     for p in points]),
            "slope_late_rss_mb_per_1000": slope_per_1000([(p["commands"], p["VmRSS"])
                                                          for p in late]),
            "slope_late_cgroup_mb_per_1000": slope_per_1000(
                [(p["commands"], p["cgroup_usage"]) for p in late if "cgroup_usage" in p]),
            **_reading(proc.pid, hold_s, cgroup)}


def _worker_env(variant: str, env_extra: dict[str, str], workdir: Path,
                stages: Sequence[Sequence[str]], mixed: int, spec_text: str = SPEC
                ) -> dict[str, str]:
    auth = workdir / f"auth-{variant}"
    auth.mkdir(parents=True, exist_ok=True)
    spec = workdir / f"spec-{variant}.yaml"
    spec.write_text(spec_text)  # as a tenant would write it: limits, a custom command, notes
    env = python_env({
        "BOT_ID": "demo", "SERVER_NAME": "acme", "AUTH_DIR": str(auth),
        "HTTP_PORT": str(free_port()), "HTTP_HOST": "127.0.0.1", "POD_NAME": "bench-density",
        "WABOT_SPEC_SOURCE": f"file:{spec}", "LOG_LEVEL": "INFO",
        **worker_tuning(), **env_extra,
    })
    if stages or mixed:
        env.update({"PYTHONPATH": f"{COMMAND_HOOKS}{os.pathsep}{env['PYTHONPATH']}",
                    "WABOT_BENCH_COMMANDS": ";".join("|".join(s) for s in stages),
                    "WABOT_BENCH_MIXED": str(mixed),
                    "WABOT_BENCH_MIXED_TEXTS": "|".join(MIXED_TEXTS),
                    "WABOT_BENCH_COMMAND_TRIGGER": str(workdir / f"command-{variant}"),
                    "WABOT_BENCH_COMMAND_DONE": str(workdir / f"handled-{variant}")})
    return env


def measure_worker(variant: str, env_extra: dict[str, str], hold_s: float,
                   workdir: Path, stages: Sequence[Sequence[str]] = (),
                   mixed: int = 0, spec_text: str = SPEC) -> dict[str, Any]:
    """Start a worker (in a memory cgroup of its own when one can be made), let it fail its
    first dial, read its memory `hold_s` after start; then after each stage of commands; then
    over `mixed` more commands."""
    env = _worker_env(variant, env_extra, workdir, stages, mixed, spec_text)
    cgroup = MemoryCgroup.create("wabot-bench-density")
    log_path = workdir / f"worker-{variant}.log"
    argv = [_python(), "-m", "wabot", "worker"]
    proc = Child(cgroup.wrap(argv) if cgroup else argv, env=env, cwd=REPO, log=log_path)
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
            "variant": variant, **samples, **(cgroup.read() if cgroup else {}),
            "cgroup": str(cgroup.directory) if cgroup else None,
            "hwm_mb": st["VmHWM"] / 1024,
            "rss_anon_mb": st.get("RssAnon", 0) / 1024,
            "rss_file_mb": st.get("RssFile", 0) / 1024,
            "pss_mb": pss_mb(proc.pid),
            "threads": st.get("Threads"),
            "first_dial_failed_after_s": round(dial_s, 2),
            "dial_attempts": _dial_attempts(log_path),
            "tuning": worker_tuning(),
        }
        if stages:
            out["after_commands"] = _worked(proc, stages, hold_s, variant, env, cgroup)
        if mixed:
            out["mixed"] = _mixed(proc, env, hold_s, variant, cgroup)
    finally:
        proc.stop()
        if cgroup is not None:
            cgroup.remove()
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


# --- the benchmark ----------------------------------------------------------------------------


def run(*, hold_s: float = 10.0, pg_dsn: str | None = None, with_image: bool = False,
        container: bool = True, kubernetes: bool = True, mixed: int = 10_000) -> Result:
    res = Result("density", "Density: the memory of one bot, idle and after it has worked")
    with tempfile.TemporaryDirectory(prefix="wabot-bench-density-") as tmp:
        work = Path(tmp)
        variants: list[tuple[str, dict[str, str]]] = [("sqlite", {})]
        if pg_dsn:
            variants.append(("postgres", {"DATABASE_URL": pg_dsn}))
        workers: dict[str, dict[str, Any]] = {}
        for variant, env in variants:
            log(f"density: worker ({variant}), then its commands and {mixed:,} mixed ones")
            stages = STAGES + MEDIA_STAGES if variant == "sqlite" else STAGES
            workers[variant] = measure_worker(variant, env, hold_s, work, stages=stages,
                                              mixed=mixed)
        if pg_dsn:
            log("density: worker (PostgreSQL) with a webhook to a receiver on loopback")
            workers["postgres_webhook"] = density_webhook.measure(
                measure_worker, {"DATABASE_URL": pg_dsn}, hold_s, work,
                mixed=min(mixed, WEBHOOK_MIXED))
        if kubernetes:
            log("density: worker (kubernetes spec source, local control plane)")
            try:
                workers["kubernetes"] = measure_worker_kubernetes(hold_s, work)
            except Exception as exc:
                res.note(f"kubernetes variant failed: {exc}")
        log("density: Baileys baseline")
        baileys = measure_baileys(hold_s, work)
        res.extra.update(workers=workers, baileys=baileys, interpreter=interpreter_floor())
        report_workers(res, workers, baileys, hold_s)
        if with_image and not dc.image_exists():
            dc.build_image()
        if not container:
            res.note("container not measured (container=False)")
        elif dc.image_exists():
            log("density: worker container")
            try:
                res.extra["container"] = dc.measure_container(hold_s, work)
                if pg_dsn:
                    log(f"density: worker container on PostgreSQL, its commands, {mixed:,} more")
                    res.extra["container"]["on_postgres"] = dc.measure_container(
                        hold_s, work, pg_dsn=pg_dsn, mixed=mixed)
                report_container(res, res.extra["container"], baileys["rss_mb"])
            except Exception as exc:  # the rest of the benchmark still stands
                res.note(f"container measurement failed: {exc}")
                res.extra["container"] = {"error": str(exc)}
        else:
            res.note(f"image {IMAGE} not found (podman images): container not measured; "
                     "`python -m bench --with-image` builds it with images/build.sh")
            res.extra["container"] = {"missing": IMAGE}
    return res


def interpreter_floor() -> dict[str, float]:
    """VmRSS of `python -c pass` with this interpreter, with and without site-packages' .pth
    files: what every Python process here pays before importing anything of its own (a
    development machine's .pth hooks are not in the image)."""
    out = {}
    for key, flags in (("plain_mb", []), ("no_site_mb", ["-S"])):
        code = "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
        done = subprocess.run([_python(), *flags, "-c", code], capture_output=True, text=True,
                              timeout=30)
        out[key] = int(done.stdout.strip()) / 1024
    return out
