"""Shared pieces of the benchmarks: /proc readings, percentiles, child processes that are always
stopped (own process group, killed on the way out even after a failure), the machine
description, and the result record every benchmark returns."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.polling import eventually

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
HOOKS = BENCH / "_hooks"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- results --------------------------------------------------------------------------------


@dataclass
class Metric:
    """One reported number. `target` is a human-readable goal ("<= 90 MB"), `met` whether this
    run reached it (None: no target)."""

    name: str
    value: float | None
    unit: str
    target: str | None = None
    met: bool | None = None
    note: str = ""


@dataclass
class Result:
    """What one benchmark produced: its metrics, ratios against its same-run baseline, notes
    on how it was measured, and raw extras (timelines, per-variant details) for results.json."""

    bench: str
    title: str
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(self, name: str, value: float | None, unit: str, *, target: str | None = None,
            met: bool | None = None, note: str = "") -> Metric:
        m = Metric(name, None if value is None else round(float(value), 4), unit, target, met,
                   note)
        self.metrics.append(m)
        return m

    def note(self, text: str) -> None:
        self.notes.append(text)


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100.0 * len(ordered)) - 1))
    return ordered[k]


def peak_rate(times: Sequence[float], window: float = 1.0) -> float:
    """The most events seen in any `window`-second sliding window, per second."""
    if not times:
        return 0.0
    ordered = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ordered):
        while ordered[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


# --- /proc ----------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if (len(parts) == 2 and parts[1] == "kB") or key == "Threads":
                out[key] = int(parts[0])
    return out


def rss_mb(pid: int) -> float:
    return proc_status(pid)["VmRSS"] / 1024.0


def pss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of the process (all its threads), or of its thread `tid`, in seconds."""
    with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
                break
    free_g = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() \
        if _which("node") else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_gib": round(mem_gib, 1),
        "free_g": free_g,
        "python": platform.python_version(),
        "node": node,
        "kernel": platform.release(),
        "loadavg_at_start": loadavg(),
    }


def _which(name: str) -> bool:
    from shutil import which

    return which(name) is not None


# --- child processes ------------------------------------------------------------------------


class Child:
    """A child process in a process group of its own; `stop()` ends the whole group (SIGTERM,
    then SIGKILL) and is safe to call twice."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, log: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        out: Any = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("ab")
        try:
            self.proc = subprocess.Popen(self.argv, env=dict(env) if env is not None else None,
                                         cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if log is not None:
                out.close()
        _LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Anything the child left behind in its group (neonize threads are in-process; this is
        # for shells and npm).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self in _LIVE:
            _LIVE.remove(self)
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


_LIVE: list[Child] = []


def stop_all_children() -> None:
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.stop(5.0)


@contextlib.contextmanager
def child(argv: Sequence[str], **kw: Any) -> Iterator[Child]:
    c = Child(argv, **kw)
    try:
        yield c
    finally:
        c.stop()


def python_env(extra: Mapping[str, str] | None = None, *, hooks: bool = False) -> dict[str, str]:
    """The environment for a Python child: the repo importable; with `hooks`, bench/_hooks on
    PYTHONPATH so its sitecustomize counts the child's API requests."""
    env = dict(os.environ)
    paths = [str(REPO)]
    if hooks:
        paths.insert(0, str(HOOKS))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("KUBECONFIG", None)
    if extra:
        env.update(extra)
    return env


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """The tests' `eventually` (tests/support), in the benchmarks' argument order; a miss is
    a TimeoutError, which the runs report as a failed measurement."""
    return eventually(check, timeout, interval, what, error=TimeoutError)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- how busy the machine was -------------------------------------------------------------------


def _busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class MachineMeter:
    """CPU the whole machine used (in cores) while a benchmark ran, and the load average: the
    machine is shared, and other work on it shows up in every number."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0, _ = _busy_jiffies()
        self.load0 = loadavg()

    def read(self) -> dict[str, Any]:
        busy, _ = _busy_jiffies()
        elapsed = max(1e-6, time.monotonic() - self.t0)
        return {
            "machine_busy_cores": round((busy - self.busy0) / CLK_TCK / elapsed, 2),
            "loadavg_1m_start": self.load0[0],
            "loadavg_1m_end": loadavg()[0],
        }
