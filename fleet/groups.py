"""The controller's worker groups: the process each one is, how the API shows them, the call
the controller makes to a group's own API, and the rollout that restarts them one at a time."""

from __future__ import annotations

import logging
import secrets
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .endpoint import BotView
from .policy import State
from .settings import MonolithSettings
from .supervisor import ProcessSpec
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
