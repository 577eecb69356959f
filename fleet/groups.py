"""The controller's worker groups: the process each one is, how the API shows them, the call
the controller makes to a group's own API, and the rollout that restarts them one at a time."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .botsfile import BotDefinition, dump_bots
from .endpoint import BotView
from .policy import State
from .settings import MonolithSettings
from .sharding import owner
from .supervisor import ProcessSpec, Supervisor
from .workers import inherited_env, python_path

# The controller's logger: these lines have always been the controller's.
log = logging.getLogger("wabot.fleet.controller")


class ControllerBotView(BotView):
    """A bot as the controller sees it; `state` is "unknown" while its group does not answer."""

    state: State | Literal["unknown"]  # type: ignore[assignment]


class GroupView(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    state: State
    pid: int | None
    port: int | None
    restarts: int
    last_exit_code: int | None
    live: bool | None
    bots: int
    started_at: datetime | None


class RolloutStep(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    group: str
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool | None = None
    detail: str = ""


class Rollout(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: str
    state: Literal["running", "succeeded", "failed"]
    steps: list[RolloutStep] = Field(default_factory=list)
    error: str | None = None


def fetch_json(url: str, token: str, method: str = "GET", timeout: float = 5.0
                ) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return int(err.code), None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None



class Rollouts:
    """`POST /groups/rollout`: restart the groups one at a time, each only after the previous
    one's wanted bots answer /livez again, so at most one group's bots are ever down."""

    def __init__(self, groups: Sequence[str],
                 restart_and_wait: Callable[[str, float], tuple[bool, str]],
                 timeout_s: float) -> None:
        self.groups = list(groups)
        self._restart_and_wait = restart_and_wait
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self.current: Rollout | None = None

    def start(self) -> Rollout | None:
        """None when a rollout is already running (one at a time)."""
        with self._lock:
            if self.current is not None and self.current.state == "running":
                return None
            self.current = Rollout(id=secrets.token_hex(4), state="running")
            rollout = self.current
        threading.Thread(target=self._roll, args=(rollout,), name="fleet-rollout",
                         daemon=True).start()
        return rollout

    def _roll(self, rollout: Rollout) -> None:
        log.info("rollout started", extra={"rollout": rollout.id, "groups": self.groups})
        for group in self.groups:
            step = RolloutStep(group=group, started_at=datetime.now(UTC))
            rollout.steps.append(step)
            ok, detail = self._restart_and_wait(group, self._timeout_s)
            step.finished_at, step.ok, step.detail = datetime.now(UTC), ok, detail
            log.info("rollout step done", extra={"rollout": rollout.id, "group": group,
                                                 "ok": ok, "detail": detail})
            if not ok:
                # Stop here: rolling the next group would take more bots down.
                rollout.state, rollout.error = "failed", f"{group}: {detail}"
                return
        rollout.state = "succeeded"


def group_env(base: MonolithSettings, env: Mapping[str, str], token: str, run_dir: Path
              ) -> dict[str, str]:
    """A group's environment: the controller's own minus the tier's secrets, the settings the
    group's bots share, and the group's internal token and loopback address."""
    out = inherited_env(env)
    out["PYTHONPATH"] = python_path(env.get("PYTHONPATH"))
    passthrough = {"AUTH_DIR": str(base.auth_dir.resolve()),
                   "WABOT_STOP_GRACE_SECONDS": str(base.stop_grace_s),
                   "WABOT_FEDERATE_METRICS": "1" if base.federate_metrics else "0",
                   "LOG_LEVEL": base.log_level}
    if base.database_url is not None:
        passthrough["DATABASE_URL"] = base.database_url.get_secret_value()
    if base.secrets_dir is not None:
        passthrough["WABOT_SECRETS_DIR"] = str(base.secrets_dir.resolve())
    if env.get("WABOT_WORKER_COMMAND"):
        passthrough["WABOT_WORKER_COMMAND"] = env["WABOT_WORKER_COMMAND"]
    out.update(passthrough)
    out.update({
        "ROLE": "monolith",
        "WABOT_HTTP_HOST": "127.0.0.1",
        "WABOT_CONTROLLER_TOKEN": token,
        "WABOT_RUN_DIR": str(run_dir),
    })
    return out


def group_process(group: str, bots_file: Path, stopped_file: Path, env: dict[str, str]
                  ) -> ProcessSpec:
    """A group is the monolith program on a free loopback port with the group's bots file."""
    return ProcessSpec(
        name=group,
        argv=(sys.executable, "-m", "fleet", "monolith", "--bots", str(bots_file),
              "--group", group, "--stopped-file", str(stopped_file)),
        env=env, labels={"group": group}, port_env="WABOT_HTTP_PORT",
        health_path="/livez", ready_path="/readyz",
    )


class WorkerGroups:
    """The controller's side of its groups: which group owns each bot (rendezvous hashing, so
    a reload never moves a bot), the bots stopped through the API (remembered, so a restarted
    group keeps them stopped), each group's files and process, and the calls to a group's own
    API with the internal token that never leaves the controller. With no groups (observe-only)
    it only holds the bots."""

    def __init__(self, names: Sequence[str], base: MonolithSettings, env: Mapping[str, str],
                 run_dir: Path, supervisor: Supervisor) -> None:
        self.names = list(names)
        self.base = base
        self.env = dict(env)
        self.run_dir = run_dir
        self.supervisor = supervisor
        self.token = secrets.token_urlsafe(32)
        self.lock = threading.RLock()
        self.bots: dict[str, BotDefinition] = {}
        self.owner: dict[str, str] = {}
        self.stopped: set[str] = set()

    def assign(self, bots: Sequence[BotDefinition]) -> None:
        """Take a new set of bots: rewrite every group's files, start, stop or restart the
        group processes to match, and ask the running ones to re-read their file."""
        with self.lock:
            self.bots = {b.name: b for b in bots}
            self.owner = ({b.name: owner(b.key, self.names) for b in bots}
                          if self.names else {})
            self.stopped &= set(self.bots)
            if self.names:
                self.supervisor.apply([self._spec(g) for g in self.names])
        if self.names:
            self._tell_to_reload()

    def bots_of(self, group: str) -> list[str]:
        with self.lock:
            return sorted(n for n, g in self.owner.items() if g == group)

    def remember(self, name: str, action: str) -> str:
        """A start/stop/restart of a bot, kept in its group's stopped file; returns the group."""
        with self.lock:
            if action == "stop":
                self.stopped.add(name)
            else:
                self.stopped.discard(name)
            group = self.owner[name]
        self._write_files(group)
        return group

    def _dir(self, group: str) -> Path:
        path = self.run_dir / group
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_files(self, group: str) -> tuple[Path, Path]:
        d = self._dir(group)
        bots_file, stopped_file = d / "bots.yaml", d / "stopped"
        with self.lock:
            bots = [self.bots[n] for n in self.bots_of(group)]
            stopped = sorted(n for n in self.stopped if self.owner.get(n) == group)
        for path, text in ((bots_file, dump_bots(bots)),
                           (stopped_file, "".join(f"{n}\n" for n in stopped))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return bots_file, stopped_file

    def _spec(self, group: str) -> ProcessSpec:
        bots_file, stopped_file = self._write_files(group)
        env = group_env(self.base, self.env, self.token, self._dir(group) / "run")
        return group_process(group, bots_file, stopped_file, env)

    def url(self, group: str) -> str | None:
        for st in self.supervisor.status(group):
            if st.state is State.RUNNING and st.port is not None:
                return f"http://127.0.0.1:{st.port}"
        return None

    def call(self, group: str, path: str, method: str = "GET") -> tuple[int, Any]:
        """The group's own API; (0, None) while it does not run or answer."""
        url = self.url(group)
        if url is None:
            return 0, None
        return fetch_json(url + path, self.token, method)

    def _tell_to_reload(self) -> None:
        for group in self.names:
            url = self.url(group)
            if url is not None:
                code, _ = fetch_json(url + "/reload", self.token, "POST")
                if code != 200:
                    log.warning("group did not reload; it reads its file at its next start",
                                extra={"group": group, "status": code})

    def report(self, group: str) -> dict[str, dict[str, Any]] | None:
        """The group's GET /bots by name, or None while it does not answer."""
        code, body = self.call(group, "/bots")
        if code != 200 or not isinstance(body, list):
            return None
        return {b["name"]: b for b in body}

    def restart_and_wait(self, group: str, timeout: float) -> tuple[bool, str]:
        """Restart one group and wait until every bot it wants answers /livez again."""
        (before,) = self.supervisor.status(group)
        if not self.supervisor.restart(group):
            return False, "no such group"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (st,) = self.supervisor.status(group)
            if (st.state is State.RUNNING and st.pid != before.pid and st.live
                    and self._bots_back(group)):
                return True, "every wanted bot answers /livez"
            time.sleep(0.25)
        return False, f"its bots were not back within {timeout:.0f}s"

    def _bots_back(self, group: str) -> bool:
        report = self.report(group)
        if report is None:
            return False
        want = set(self.bots_of(group))
        if set(report) != want:
            return False
        return all(b["live"] and b["state"] == "running" for b in report.values()
                   if b["desired"])
