"""One OS process per supervised unit (a bot, or in the controller a worker group): start,
watch, restart with backoff, stop with a grace period, probe health, report status.

Why processes and not threads: neonize's Go runtime aborts the whole process when several
clients run in it (see the neonize notes), and a process is also the only boundary Python has
for a crash, a memory leak or a stuck C call. The decisions live in `fleet.policy` (pure); this
module only carries them out, so the rules are tested without processes and the processes are
tested without timing tricks.

Threading: every spawn and every signal happens on the thread that calls `run()` (the main
thread), because the kernel's parent-death signal is tied to the spawning *thread*. Other
threads (the HTTP API, the prober) only change desired state under the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from . import child as child_module
from .policy import Action, RestartPolicy, Slot, State
from .policy import exited as _exited
from .policy import plan as _plan
from .policy import probed as _probed
from .policy import restart as _restart
from .policy import start_failed as _start_failed
from .policy import started as _started
from .policy import terminating as _terminating
from .policy import want as _want

log = logging.getLogger("wabot.fleet.supervisor")


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one unit. A changed fingerprint restarts the unit with the new spec."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    lock_path: Path | None = None
    # The env var that receives a freshly allocated free port at every start (None: no port).
    port_env: str | None = "HTTP_PORT"
    health_path: str | None = "/livez"
    ready_path: str | None = "/readyz"
    host: str = "127.0.0.1"
    revision: str = ""

    def fingerprint(self) -> str:
        data = json.dumps(
            [list(self.argv), sorted(self.env.items()), str(self.lock_path), self.port_env,
             self.revision],
            sort_keys=True,
        )
        return hashlib.sha256(data.encode()).hexdigest()


class UnitRun(BaseModel):
    """How a unit's process runs, as the supervisor last saw it: the part of a unit's status
    that the API shows of a bot too (`fleet.endpoint.BotView` extends it)."""

    model_config = ConfigDict(frozen=True)

    name: str
    state: State
    desired: bool
    pid: int | None
    port: int | None
    restarts: int
    last_exit_code: int | None
    live: bool | None
    ready: bool | None

    def run(self) -> dict[str, Any]:
        """These fields alone, to build a view of the unit from its status."""
        return {name: getattr(self, name) for name in UnitRun.model_fields}


class UnitStatus(UnitRun):
    """What the API and metrics show per unit."""

    started_at: float | None  # unix time of the current process's start
    labels: dict[str, str]


@dataclass
class _Unit:
    spec: ProcessSpec
    slot: Slot = field(default_factory=Slot)
    proc: subprocess.Popen[bytes] | None = None
    port: int | None = None
    ready: bool | None = None
    started_wall: float | None = None
    remove: bool = False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _fields(unit: _Unit, **extra: object) -> dict[str, object]:
    return {"unit": unit.spec.name, **unit.spec.labels, **extra}


def http_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Supervisor:
    def __init__(
        self,
        policy: RestartPolicy | None = None,
        *,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[str, float], bool] = http_ok,
        probe_timeout_s: float = 2.0,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._rand = rand
        self._clock = clock
        self._probe = probe
        self._probe_timeout_s = probe_timeout_s
        self._stdout = stdout
        self._stderr = stderr
        self._lock = threading.RLock()
        self._units: dict[str, _Unit] = {}
        self._wake = threading.Event()
        self.heartbeat = clock()
        self.loaded = False

    # --- desired state (any thread) ---------------------------------------------------------

    def apply(self, specs: Iterable[ProcessSpec], stopped: Iterable[str] = ()) -> None:
        """Make the set of units equal to `specs`: new ones start, missing ones stop and go,
        changed ones restart with their new spec; `stopped` units are kept but not run."""
        stopped_set = set(stopped)
        with self._lock:
            seen = set()
            for spec in specs:
                seen.add(spec.name)
                unit = self._units.get(spec.name)
                desired = spec.name not in stopped_set
                if unit is None:
                    self._units[spec.name] = _Unit(spec=spec, slot=_want(Slot(), desired))
                    continue
                changed = unit.spec.fingerprint() != spec.fingerprint()
                unit.spec = spec
                unit.remove = False
                unit.slot = _want(unit.slot, desired)
                if changed and desired:
                    log.info("unit spec changed: restarting", extra=_fields(unit))
                    unit.slot = _restart(unit.slot, self._clock())
            for name, unit in self._units.items():
                if name not in seen:
                    unit.remove = True
                    unit.slot = _want(unit.slot, False)
            self.loaded = True
        self._wake.set()

    def start(self, name: str) -> bool:
        return self._change(name, lambda s: _want(s, True))

    def stop(self, name: str) -> bool:
        return self._change(name, lambda s: _want(s, False))

    def restart(self, name: str) -> bool:
        now = self._clock()
        return self._change(name, lambda s: _restart(s, now))

    def _change(self, name: str, fn: Callable[[Slot], Slot]) -> bool:
        with self._lock:
            unit = self._units.get(name)
            if unit is None or unit.remove:
                return False
            unit.slot = fn(unit.slot)
        self._wake.set()
        return True

    def stop_all(self) -> None:
        with self._lock:
            for unit in self._units.values():
                unit.slot = _want(unit.slot, False)
        self._wake.set()

    # --- observation (any thread) -----------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, u in self._units.items() if not u.remove]

    def status(self, name: str | None = None) -> list[UnitStatus]:
        with self._lock:
            units = [u for u in self._units.values() if name is None or u.spec.name == name]
            return [
                UnitStatus(
                    name=u.spec.name, state=u.slot.state, desired=u.slot.desired,
                    pid=u.slot.pid, port=u.port if u.slot.pid else None,
                    restarts=u.slot.restarts, last_exit_code=u.slot.last_exit_code,
                    live=u.slot.live, ready=u.ready if u.slot.pid else None,
                    started_at=u.started_wall if u.slot.pid else None,
                    labels=dict(u.spec.labels),
                )
                for u in units
            ]

    def all_stopped(self) -> bool:
        with self._lock:
            return all(u.slot.state is State.STOPPED for u in self._units.values())

    # --- the loop (the main thread) ---------------------------------------------------------

    def tick(self) -> None:
        """Reap exited processes, then carry out each unit's planned action."""
        now = self._clock()
        self.heartbeat = now
        with self._lock:
            for unit in list(self._units.values()):
                self._reap(unit, now)
                action = _plan(unit.slot, now, self.policy)
                if action is Action.START:
                    self._spawn(unit, now)
                elif action is Action.TERMINATE:
                    self._signal(unit, signal.SIGTERM)
                    unit.slot = _terminating(unit.slot, now, self.policy)
                    log.info("stopping unit (SIGTERM)", extra=_fields(
                        unit, pid=unit.slot.pid, reason=str(unit.slot.stop_reason)))
                elif action is Action.KILL:
                    log.warning("unit did not stop within the grace period: SIGKILL",
                                extra=_fields(unit, pid=unit.slot.pid))
                    self._signal(unit, signal.SIGKILL)
                    unit.slot = replace(unit.slot, kill_at=None)
                if unit.remove and unit.slot.state is State.STOPPED:
                    del self._units[unit.spec.name]

    def _reap(self, unit: _Unit, now: float) -> None:
        if unit.proc is None:
            return
        code = unit.proc.poll()
        if code is None:
            return
        before = unit.slot
        unit.proc = None
        unit.ready = None
        unit.slot = _exited(unit.slot, code, now, self._rand(), self.policy)
        if unit.slot.state is State.BACKOFF and before.state is State.RUNNING:
            delay = (unit.slot.retry_at or now) - now
            log.warning("unit exited unexpectedly; restarting after backoff", extra=_fields(
                unit, pid=before.pid, exit_code=code, restarts=unit.slot.restarts,
                delay_s=round(delay, 2)))
        else:
            log.info("unit exited", extra=_fields(unit, pid=before.pid, exit_code=code,
                                                  state=str(unit.slot.state)))

    def _spawn(self, unit: _Unit, now: float) -> None:
        spec = unit.spec
        env = dict(spec.env)
        port: int | None = None
        if spec.port_env:
            port = free_port(spec.host)
            env[spec.port_env] = str(port)
        argv = [sys.executable, child_module.__file__, "--parent", str(os.getpid())]
        if spec.lock_path is not None:
            argv += ["--lock", str(spec.lock_path)]
        argv += ["--", *spec.argv]
        try:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=self._stdout,
                stderr=self._stderr, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            unit.slot = _start_failed(unit.slot, now, self._rand(), self.policy)
            log.error("cannot start unit", extra=_fields(unit, error=str(exc)))
            return
        unit.proc = proc
        unit.port = port
        unit.ready = None
        unit.started_wall = time.time()
        unit.slot = _started(unit.slot, proc.pid, now)
        log.info("unit started", extra=_fields(unit, pid=proc.pid, port=port,
                                               restarts=unit.slot.restarts))

    def _signal(self, unit: _Unit, sig: signal.Signals) -> None:
        if unit.proc is None:
            return
        # The unit leads its own session (start_new_session), so its whole group is signalled:
        # nothing it started survives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(unit.proc.pid, sig)

    def probe_once(self) -> None:
        """Ask every running unit's health endpoints; feed the results to the policy."""
        with self._lock:
            targets = [
                (u.spec.name, u.slot.pid, u.spec.host, u.port, u.spec.health_path,
                 u.spec.ready_path)
                for u in self._units.values()
                if u.slot.state is State.RUNNING and u.port is not None
            ]
        if not targets:
            return

        def ask(target: tuple[str, int | None, str, int | None, str | None, str | None]
                ) -> tuple[bool, bool | None]:
            _name, _pid, host, port, health, ready = target
            base = f"http://{host}:{port}"
            live_ok = self._probe(base + health, self._probe_timeout_s) if health else True
            ready_ok = self._probe(base + ready, self._probe_timeout_s) if ready else None
            return live_ok, ready_ok

        # In parallel: a few hung workers must not delay everybody else's probe.
        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            results = list(pool.map(ask, targets))
        for (name, pid, *_rest), (live_ok, ready_ok) in zip(targets, results, strict=True):
            with self._lock:
                unit = self._units.get(name)
                if unit is None or unit.slot.pid != pid:
                    continue  # restarted meanwhile: this result is about the old process
                was = unit.slot.live_failures
                unit.slot = _probed(unit.slot, live_ok, self._clock(), self.policy)
                unit.ready = ready_ok
                if unit.slot.live_failures >= self.policy.liveness_failures > was:
                    log.warning("unit failed its liveness probe; restarting",
                                extra=_fields(unit, pid=pid))
        self._wake.set()

    def run(self, stop: threading.Event, tick_s: float = 0.1,
            probe_interval_s: float = 5.0) -> None:
        """Supervise until `stop` is set, then stop every unit (SIGTERM, grace, SIGKILL)."""
        prober = threading.Thread(target=self._probe_loop, args=(stop, probe_interval_s),
                                  name="fleet-prober", daemon=True)
        prober.start()
        try:
            while not stop.is_set():
                self.tick()
                self._wake.wait(tick_s)
                self._wake.clear()
        finally:
            self.shutdown()

    def _probe_loop(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.probe_once()
            except Exception:  # a prober bug must not end supervision
                log.exception("probe round failed")

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every unit and wait: SIGTERM now, SIGKILL after the grace period."""
        self.stop_all()
        deadline = self._clock() + (timeout if timeout is not None else self.policy.grace_s + 5)
        while not self.all_stopped():
            self.tick()
            if self._clock() > deadline:
                with self._lock:
                    for unit in self._units.values():
                        self._signal(unit, signal.SIGKILL)
                time.sleep(0.2)
                self.tick()
                break
            time.sleep(0.05)
