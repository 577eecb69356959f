"""What the kernel charges a process's memory cgroup: the number Kubernetes compares with a
container's memory limit, printed beside VmRSS.

The two differ: the cgroup is charged the page cache its processes bring in (the files they
read or write first: a bot's SQLite file and session store, its logs) and not the shared
library pages another process already had in the cache; VmRSS counts every resident page of
the process, shared libraries included. Kubernetes' "working set" (what the kubelet evicts
on and `kubectl top` shows) is usage minus the inactive page cache.

`MemoryCgroup` makes a cgroup of its own for one benchmark process (cgroup v1 memory
controller, as on this machine, or a cgroup v2 directory when that is what is mounted), under
this process's own cgroup, and starts the process inside it from its first instruction (a
shell writes its pid into the cgroup, then execs the command): nothing it allocates is charged
elsewhere. When no cgroup can be made (no permission, no controller), `create` returns None and
the benchmark says so.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str:
    """This process's cgroup path for `controller` ("" for the v2 unified hierarchy)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == controller:
                return path
    return "/"


def read_memory(directory: Path) -> dict[str, float]:
    """usage, rss (anon), cache and working set of a cgroup directory (v1 or v2), in MiB."""
    out: dict[str, float] = {}
    if (directory / "memory.usage_in_bytes").exists():  # v1
        out["cgroup_usage_mb"] = int((directory / "memory.usage_in_bytes").read_text()) / 1048576
        out["cgroup_max_usage_mb"] = int(
            (directory / "memory.max_usage_in_bytes").read_text()) / 1048576
        out["cgroup_failcnt"] = int((directory / "memory.failcnt").read_text())
        stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
        out["cgroup_rss_mb"] = int(stat.get("total_rss", stat.get("rss", 0))) / 1048576
        out["cgroup_cache_mb"] = int(stat.get("total_cache", stat.get("cache", 0))) / 1048576
        inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
    elif (directory / "memory.current").exists():  # v2
        out["cgroup_usage_mb"] = int((directory / "memory.current").read_text()) / 1048576
        if (directory / "memory.peak").exists():
            out["cgroup_max_usage_mb"] = int((directory / "memory.peak").read_text()) / 1048576
        stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
        out["cgroup_rss_mb"] = int(stat.get("anon", 0)) / 1048576
        out["cgroup_cache_mb"] = int(stat.get("file", 0)) / 1048576
        inactive = int(stat.get("inactive_file", 0))
    else:
        return out
    out["cgroup_working_set_mb"] = max(0.0, out["cgroup_usage_mb"] - inactive / 1048576)
    return out


class MemoryCgroup:
    def __init__(self, directory: Path, version: int) -> None:
        self.directory = directory
        self.version = version

    @classmethod
    def create(cls, name: str = "wabot-bench") -> MemoryCgroup | None:
        """A new cgroup under this process's own, or None when none can be made here."""
        leaf = f"{name}-{uuid.uuid4().hex[:8]}"
        candidates: list[tuple[Path, int]] = []
        if (V1 / "cgroup.procs").exists():
            candidates.append((V1 / _own_path("memory").lstrip("/") / leaf, 1))
        elif (V2 / "cgroup.controllers").exists():
            candidates.append((V2 / _own_path("").lstrip("/") / leaf, 2))
        for directory, version in candidates:
            try:
                directory.mkdir()
            except OSError:
                continue
            if (directory / "cgroup.procs").exists() and read_memory(directory):
                return cls(directory, version)
            with contextlib.suppress(OSError):
                directory.rmdir()
        return None

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started inside this cgroup: the shell moves itself in, then execs it (same
        pid, nothing allocated before the move)."""
        procs = self.directory / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def read(self) -> dict[str, float]:
        return read_memory(self.directory)

    def set_limit(self, limit_bytes: int) -> None:
        """The most this cgroup may be charged (a pod's memory limit): above it the kernel
        reclaims, then OOM-kills a process in it, as it would the container."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        (self.directory / name).write_text(str(limit_bytes))

    def reset_peak(self) -> None:
        """Start the peak afresh from the current usage (v1: max_usage_in_bytes; v2:
        memory.peak, where the kernel allows writing it)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        with contextlib.suppress(OSError):
            (self.directory / name).write_text("0")

    def oom_kills(self) -> int:
        """Processes of this cgroup the kernel OOM-killed (v1: under_oom/oom_kill in
        memory.oom_control; v2: memory.events)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError):
            for line in (self.directory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Remove the (empty) cgroup; its leftover page-cache charges go to the parent."""
        for _ in range(50):
            try:
                self.directory.rmdir()
                return
            except OSError:
                procs = (self.directory / "cgroup.procs").read_text().split()
                if procs:  # a process is still exiting
                    time.sleep(0.1)
                    continue
                return
