"""Density, the container part: `localhost/wabot-worker:test` (or $WABOT_BENCH_WORKER_IMAGE)
run hardened as Kubernetes runs it (read-only, uid 10001, no capabilities, the worker
environment's runtime settings), its process VmRSS and its cgroup's memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.cgroup import read_memory
from bench.common import REPO, log, pss_mb, wait_until
from bench.density_setup import (
    COMMAND_HOOKS,
    IMAGE,
    MIXED_TEXTS,
    SPEC,
    STAGES,
    sample_rss,
    worker_tuning,
)
from tests.support.net import free_port

PODMAN_RUNTIME = ["--runtime", "/usr/sbin/runc", "--ulimit", "nofile=1024:1024",
                  "--ulimit", "nproc=4096:4096"]
# tests/packaging/test_images.py: how Kubernetes runs the container (auth-templates/pod.yaml).
HARDENED = ["--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]


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
    """cgroup v1 (this machine) or v2 memory of the container, in MiB."""
    rel = cgroup_path.lstrip("/")
    v1 = Path("/sys/fs/cgroup/memory") / rel
    return read_memory(v1 if v1.exists() else Path("/sys/fs/cgroup") / rel)


def _container_env(port: int, pg_dsn: str | None, mixed: int) -> dict[str, str]:
    env = {"BOT_ID": "demo", "SERVER_NAME": "acme", "HTTP_PORT": str(port),
           "HTTP_HOST": "127.0.0.1", "WABOT_SPEC_SOURCE": "file:/etc/wabot/spec.yaml",
           **worker_tuning()}
    if pg_dsn:  # the worked run: PostgreSQL, the command hook mounted read-only at /hooks
        env.update({"DATABASE_URL": pg_dsn, "PYTHONPATH": "/hooks",
                    "WABOT_BENCH_COMMANDS": ";".join("|".join(s) for s in STAGES),
                    "WABOT_BENCH_MIXED": str(mixed),
                    "WABOT_BENCH_MIXED_TEXTS": "|".join(MIXED_TEXTS),
                    "WABOT_BENCH_COMMAND_TRIGGER": "/ctrl/command",
                    "WABOT_BENCH_COMMAND_DONE": "/ctrl/handled"})
    return env


def _wait_file(path: Path, timeout_s: float, what: str, name: str) -> dict[str, Any]:
    def there() -> bool:
        if _podman("inspect", "--format", "{{.State.Running}}", name).strip() != "true":
            raise RuntimeError(f"the container exited: {_podman('logs', name, check=False)}")
        return path.exists()

    wait_until(there, timeout_s, what, interval=0.2)
    answer: dict[str, Any] = json.loads(path.read_text())
    return answer


def _container_worked(name: str, pid: int, cgroup: str, ctrl: Path, hold_s: float,
                      mixed: int) -> dict[str, Any]:
    """The density stages and the mixed run inside the container (bench/_command_hooks),
    its process RSS and its cgroup after each."""
    out: dict[str, Any] = {"stages": []}
    for n, texts in enumerate(STAGES, start=1):
        (ctrl / f"command.{n}").touch()
        answer = _wait_file(ctrl / f"handled.{n}", 90, f"{texts!r} in the container", name)
        out["stages"].append({**answer, "texts": list(texts),
                              **sample_rss(pid, time.monotonic(), hold_s),
                              **_cgroup_memory(cgroup)})
    if mixed:
        (ctrl / "command.mixed").touch()
        answer = _wait_file(ctrl / "handled.mixed", 1800, "the mixed run in the container", name)
        points = [json.loads(x) for x in (ctrl / "handled.mixed.jsonl").read_text().splitlines()]
        out["mixed"] = {**answer, "points": points, **sample_rss(pid, time.monotonic(), hold_s),
                        **_cgroup_memory(cgroup)}
    return out


def measure_container(hold_s: float, workdir: Path, pg_dsn: str | None = None,
                      mixed: int = 0) -> dict[str, Any]:
    """Idle; with `pg_dsn` also after every kind of command and `mixed` more on PostgreSQL."""
    tag = "worked" if pg_dsn else "idle"
    auth, ctrl = workdir / f"container-auth-{tag}", workdir / f"container-ctrl-{tag}"
    auth.mkdir(parents=True, exist_ok=True)
    shutil.chown(auth, 10001, 10001)
    ctrl.mkdir(parents=True, exist_ok=True)
    ctrl.chmod(0o777)  # the hook (uid 10001) writes its answers here
    spec = workdir / f"container-spec-{tag}.yaml"
    spec.write_text(SPEC)
    spec.chmod(0o644)
    name = f"wabot-bench-density-{uuid.uuid4().hex[:8]}"
    image_id = _podman("image", "inspect", "--format", "{{.Id}} {{.Created}}", IMAGE).strip()
    _podman("run", "-d", "--name", name, *PODMAN_RUNTIME, *HARDENED, "--network=host",
            "-v", f"{auth}:/var/lib/wabot:rw", "-v", f"{spec}:/etc/wabot/spec.yaml:ro",
            "-v", f"{COMMAND_HOOKS}:/hooks:ro", "-v", f"{ctrl}:/ctrl:rw",
            *[f"-e={k}={v}" for k, v in _container_env(free_port(), pg_dsn, mixed).items()],
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
        if pg_dsn:
            out["worked"] = _container_worked(name, pid, cgroup, ctrl, hold_s, mixed)
    finally:
        _podman("rm", "-f", "-t", "5", name, check=False)
    return out
