"""The real node's cgroups: one tree per node (`/<name>` in every cgroup v1 hierarchy and the
v2 one), holding containerd, its shims, the kubelet (`/<name>/daemons`) and every pod (the
kubelet's `cgroupRoot`, so `/<name>/kubepods/...`).

Why: a pod's processes are not children of anything the devcluster started (the shims detach),
and some run in namespaces of their own. Their cgroup is the one place that lists them all, so
stopping the node kills what its tree holds and then removes the tree: nothing of the node
outlives `devcluster down`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """The mounted hierarchies (v1 controllers, the named systemd one, v2 `unified`), each
    once (cpu and cpuacct may be one mount under two names)."""
    if (CGROUP_FS / "cgroup.procs").exists():  # cgroup v2 only: one hierarchy
        return [CGROUP_FS]
    seen: set[tuple[int, int]] = set()
    found = []
    for entry in sorted(CGROUP_FS.iterdir()):
        if entry.is_symlink() or not (entry / "cgroup.procs").exists():
            continue
        st = entry.stat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            found.append(entry)
    return found


def create(name: str) -> None:
    """`/<name>` and `/<name>/daemons` everywhere; cpuset's need their parent's cpus and mems
    before a task may join."""
    for h in hierarchies():
        for sub in (h / name, h / name / "daemons"):
            sub.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                target = sub / knob
                if target.exists() and not target.read_text().strip():
                    target.write_text((sub.parent / knob).read_text())
        # cgroup v2: the kubelet's pods below /<name> need its controllers delegated.
        controllers = h / name / "cgroup.controllers"
        if controllers.exists():
            wanted = " ".join(f"+{c}" for c in controllers.read_text().split())
            if wanted:
                (h / name / "cgroup.subtree_control").write_text(wanted)


def join(name: str, pid: int) -> None:
    """Moves `pid` into `/<name>/daemons` in every hierarchy (its children follow)."""
    for h in hierarchies():
        (h / name / "daemons" / "cgroup.procs").write_text(f"{pid}\n")


def pids(name: str) -> set[int]:
    found: set[int] = set()
    for h in hierarchies():
        root = h / name
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    text = (Path(dirpath) / "cgroup.procs").read_text()
                    found.update(int(p) for p in text.split())
    return found


def kill_tree(name: str, timeout: float = 10.0) -> None:
    """SIGKILL to every process in the tree until none is left, then remove the tree's
    directories (deepest first). A leftover directory means a process escaped: an error."""
    deadline = time.monotonic() + timeout
    while (left := pids(name)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if left:
        raise RuntimeError(f"processes {sorted(left)} in cgroup /{name} survived SIGKILL")
    for h in hierarchies():
        root = h / name
        if not root.exists():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
            _rmdir_retrying(Path(dirpath), deadline)


def _rmdir_retrying(path: Path, deadline: float) -> None:
    """A cgroup whose last task just died can be busy for a moment."""
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
