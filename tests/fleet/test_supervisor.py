"""The supervisor with real OS processes (small HTTP children standing in for workers; the
monolith tests run the real worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet.policy import RestartPolicy, State
from fleet.supervisor import ProcessSpec, Supervisor

from .helpers import fake_worker_argv, kill9, pid_alive, running_supervisor, wait_for

pytestmark = pytest.mark.slow

# Liveness is judged only after 30 s here: a loaded CI machine may take a moment to answer the
# first probes, and these tests are about crashes and requests, not hangs.
FAST = RestartPolicy(base_s=0.2, cap_s=1.0, stable_after_s=30.0, grace_s=1.5,
                     liveness_failures=2, liveness_initial_delay_s=30.0)


def spec(name: str, tmp: Path, **env: str) -> ProcessSpec:
    return ProcessSpec(name=name, argv=fake_worker_argv(), env={**os.environ, **env},
                       labels={"bot": name, "server_name": "t"},
                       lock_path=tmp / f"{name}.lock")


def running_pid(sup: Supervisor, name: str, other_than: int | None = None) -> int | None:
    (st,) = sup.status(name)
    if st.state is State.RUNNING and st.pid and st.pid != other_than and st.live:
        return st.pid
    return None


def test_crash_of_one_unit_is_restarted_without_touching_the_others(tmp_path: Path) -> None:
    sup = Supervisor(FAST)
    sup.apply([spec("a", tmp_path), spec("b", tmp_path), spec("c", tmp_path)])
    with running_supervisor(sup):
        pids = {n: wait_for(f"{n} live", lambda n=n: running_pid(sup, n))  # type: ignore[misc]
                for n in "abc"}
        ports = {s.name: s.port for s in sup.status()}
        assert len(set(ports.values())) == 3  # a port of its own per bot
        kill9(pids["b"])
        new_b = wait_for("b restarted", lambda: running_pid(sup, "b", other_than=pids["b"]))
        (b,) = sup.status("b")
        assert b.restarts == 1 and b.last_exit_code == -signal.SIGKILL
        for n in "ac":
            (s,) = sup.status(n)
            assert s.pid == pids[n] and s.restarts == 0 and pid_alive(pids[n])
        assert new_b != pids["b"]
    for pid in [*pids.values(), new_b]:
        assert not pid_alive(pid)  # shutdown stopped everything


def test_a_unit_that_keeps_crashing_backs_off(tmp_path: Path) -> None:
    sup = Supervisor(FAST)
    sup.apply([spec("crashy", tmp_path, CRASH_AFTER="0.3"), spec("calm", tmp_path)])
    with running_supervisor(sup):
        calm = wait_for("calm live", lambda: running_pid(sup, "calm"))
        wait_for("3 restarts", lambda: sup.status("crashy")[0].restarts >= 3, timeout=30)
        (c,) = sup.status("crashy")
        assert c.last_exit_code == 3
        assert sup.status("calm")[0].pid == calm


def test_stop_start_restart_on_request(tmp_path: Path) -> None:
    sup = Supervisor(FAST)
    sup.apply([spec("a", tmp_path)])
    with running_supervisor(sup):
        first = wait_for("a live", lambda: running_pid(sup, "a"))
        assert sup.stop("a")
        wait_for("a stopped", lambda: sup.status("a")[0].state is State.STOPPED)
        assert not pid_alive(first)
        assert sup.start("a")
        second = wait_for("a live again", lambda: running_pid(sup, "a", other_than=first))
        assert sup.restart("a")
        wait_for("a restarted", lambda: running_pid(sup, "a", other_than=second))
        assert sup.status("a")[0].restarts == 1  # a requested restart counts
        assert not sup.restart("nope")


def test_sigkill_after_grace_when_sigterm_is_ignored(tmp_path: Path) -> None:
    sup = Supervisor(FAST)
    sup.apply([spec("stubborn", tmp_path, IGNORE_TERM="1")])
    with running_supervisor(sup):
        pid = wait_for("live", lambda: running_pid(sup, "stubborn"))
        t0 = time.monotonic()
        sup.stop("stubborn")
        wait_for("stopped", lambda: sup.status("stubborn")[0].state is State.STOPPED)
        assert time.monotonic() - t0 >= FAST.grace_s * 0.9
        assert sup.status("stubborn")[0].last_exit_code == -signal.SIGKILL
        assert not pid_alive(pid)


def test_failing_liveness_probe_restarts_the_unit(tmp_path: Path) -> None:
    sup = Supervisor(RestartPolicy(base_s=0.2, cap_s=1.0, grace_s=1.5, liveness_failures=2,
                                   liveness_initial_delay_s=0.0))
    sup.apply([spec("hung", tmp_path, HANG_LIVEZ="1")])
    with running_supervisor(sup, probe_interval_s=0.1):
        first = wait_for("first process", lambda: sup.status("hung")[0].pid)
        wait_for("liveness restart", lambda: sup.status("hung")[0].restarts >= 1)
        assert not pid_alive(first)  # the hung process was stopped, not left behind


def test_apply_adds_removes_and_restarts_changed_units(tmp_path: Path) -> None:
    sup = Supervisor(FAST)
    sup.apply([spec("a", tmp_path), spec("b", tmp_path)])
    with running_supervisor(sup):
        a = wait_for("a", lambda: running_pid(sup, "a"))
        b = wait_for("b", lambda: running_pid(sup, "b"))
        sup.apply([spec("a", tmp_path), spec("b", tmp_path, CHANGED="1"), spec("c", tmp_path)])
        wait_for("c", lambda: running_pid(sup, "c"))
        wait_for("b restarted", lambda: running_pid(sup, "b", other_than=b))
        assert sup.status("a")[0].pid == a
        sup.apply([spec("b", tmp_path, CHANGED="1"), spec("c", tmp_path)])
        wait_for("a gone", lambda: sup.names() == ["b", "c"] and not sup.status("a"))
        assert not pid_alive(a)


def test_two_processes_never_hold_one_session_lock(tmp_path: Path) -> None:
    """A second supervisor on the same lock waits until the first process is gone."""
    slow_probe = RestartPolicy(base_s=0.2, cap_s=1.0, grace_s=1.5,
                               liveness_initial_delay_s=60.0)
    one, two = Supervisor(slow_probe), Supervisor(slow_probe)
    one.apply([spec("a", tmp_path)])
    two.apply([spec("a", tmp_path)])
    with running_supervisor(one):
        first = wait_for("first live", lambda: running_pid(one, "a"))
        with running_supervisor(two):
            wait_for("second spawned", lambda: two.status("a")[0].pid)
            wait_for("second probed", lambda: two.status("a")[0].live is False)
            assert running_pid(one, "a") == first  # the first keeps serving, alone
            one.stop("a")
            wait_for("second takes over", lambda: running_pid(two, "a"))
            assert not pid_alive(first)


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """SIGKILL of the supervisor (no chance to clean up) still ends its children."""
    script = f"""
import os, sys, threading
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from fleet.supervisor import Supervisor, ProcessSpec
sup = Supervisor()
sup.apply([ProcessSpec(name="x", argv=("sleep", "600"), port_env=None, health_path=None,
                       ready_path=None)])
sup.tick()
print(sup.status("x")[0].pid, flush=True)
threading.Event().wait()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    wait_for("child exec'd sleep",
             lambda: "sleep" in Path(f"/proc/{child}/cmdline").read_text())
    proc.kill()
    proc.wait()
    wait_for("orphan gone", lambda: not pid_alive(child), timeout=10)
