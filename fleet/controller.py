"""`ROLE=controller` (the seed's Tier 2): N worker-group processes, each owning a stable subset
of the bots, behind one token-protected HTTP API.

Each group is the monolith program (`python -m fleet monolith --group group-i`) on a loopback
port with the group's own bots file, so inside a group every bot is still an OS process of its
own; the controller supervises the groups with the same supervisor the groups use for bots.
Bots are assigned by rendezvous hashing of serverName/botId (fleet.sharding), so restarts and
reloads never move a bot, and an added group moves few.

What the groups add over one monolith: a dead or wedged group takes only its own bots down and
is restarted alone; `POST /groups/rollout` restarts the groups one at a time and starts the next
only when every wanted bot of the previous one answers /livez again (e.g. after an upgrade of
the image or the Python environment), so at most one group's bots are ever down.

API (everything but /livez and /readyz needs `Authorization: Bearer $TOKEN`; /metrics too,
since it names every bot and tenant; it listens on 127.0.0.1 unless WABOT_HTTP_HOST says
otherwise, see fleet.monolith.default_http_host):
  GET  /bots, /bots/{name}             every bot with its group, state, restarts, pid
  POST /bots/{name}/start|stop|restart  a stop is remembered across group restarts
  GET  /groups                         the groups and their processes
  POST /groups/{name}/restart          one group
  POST /groups/rollout, GET /groups/rollout   roll every group, one at a time
  POST /reload                         re-read the bots (also SIGHUP)

The controller refuses to start without WABOT_CONTROLLER_TOKEN (16+ characters): a generated
token printed to a log is a token in every log store. The groups get a random token of their own
that never leaves the controller.

`WABOT_WORKER_GROUPS=0` is the observe-only mode used by the generated Docker Compose file, in
which every bot is a container of its own: the controller lists the bots, probes and federates
them at `WABOT_BOT_URL_TEMPLATE`, and refuses start/stop/restart (Compose owns the containers).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from wabot.settings import first_problem

from .botsfile import BotDefinition, BotsFileError, dump_bots
from .http import (
    PROMETHEUS_TEXT,
    Request,
    Response,
    Route,
    error,
    json_response,
)
from .logs import configure_logging
from .metrics import UnitCollector, merge_expositions, render, scrape_all
from .monolith import (
    MIN_TOKEN_LENGTH,
    Accepted,
    BotView,
    Health,
    MonolithSettings,
    Reloaded,
    load_bots,
    serve_until_stopped,
)
from .policy import RestartPolicy, State
from .schema import start_migrate_step
from .sharding import group_names, owner
from .supervisor import ProcessSpec, Supervisor, http_ok
from .workers import ConfigError, default_run_dir, inherited_env, python_path

log = logging.getLogger("wabot.fleet.controller")


class ControllerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    base: MonolithSettings
    token: SecretStr
    worker_groups: int = Field(default=2, ge=0, le=64)
    rollout_timeout_s: float = Field(default=300.0, gt=0)
    bot_url_template: str = Field(default="http://bot-{name}:8080", pattern=r"^https?://")

    @field_validator("bot_url_template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            value.format(name="b", bot_id="b", server_name="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder {exc} (use {{name}}, {{bot_id}}, "
                             "{server_name})") from None
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> ControllerSettings:
        base = MonolithSettings.from_env(env, **overrides)
        if base.token is None:
            raise ConfigError("WABOT_CONTROLLER_TOKEN is required: the controller's API starts, "
                              "stops and restarts bots (use 16+ random characters, e.g. "
                              "`openssl rand -hex 24`)")
        if len(base.token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"WABOT_CONTROLLER_TOKEN must be at least {MIN_TOKEN_LENGTH} "
                              "characters")
        raw: dict[str, Any] = {"base": base, "token": base.token}
        for key, field in (("WABOT_WORKER_GROUPS", "worker_groups"),
                           ("WABOT_ROLLOUT_TIMEOUT_SECONDS", "rollout_timeout_s"),
                           ("WABOT_BOT_URL_TEMPLATE", "bot_url_template")):
            if env.get(key, "").strip():
                raw[field] = env[key].strip()
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(first_problem(exc, {
                "worker_groups": "WABOT_WORKER_GROUPS",
                "rollout_timeout_s": "WABOT_ROLLOUT_TIMEOUT_SECONDS",
                "bot_url_template": "WABOT_BOT_URL_TEMPLATE"})) from None


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


def _fetch_json(url: str, token: str, method: str = "GET", timeout: float = 5.0
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


class Controller:
    def __init__(self, settings: ControllerSettings, env: Mapping[str, str] | None = None
                 ) -> None:
        self.settings = settings
        self.base = settings.base
        self._env = dict(os.environ if env is None else env)
        self._own_run_dir = self.base.run_dir is None
        self.run_dir = (self.base.run_dir or default_run_dir()).resolve()
        self.groups = group_names(settings.worker_groups)
        self._internal_token = secrets.token_urlsafe(32)
        # Groups stop their bots first (bots' grace), so a group gets that and a margin.
        self.supervisor = Supervisor(RestartPolicy(grace_s=self.base.stop_grace_s + 15,
                                                   liveness_initial_delay_s=20))
        self._lock = threading.RLock()
        self._bots: dict[str, BotDefinition] = {}
        self._owner: dict[str, str] = {}
        self._stopped: set[str] = set()
        self._rollout: Rollout | None = None
        self._scrape_up: dict[str, bool] = {}

    @property
    def observe_only(self) -> bool:
        return not self.groups

    # --- bots and groups --------------------------------------------------------------------

    def reload(self, bots: Sequence[BotDefinition] | None = None) -> int:
        if bots is None:
            bots = load_bots(self.base)
        with self._lock:
            self._bots = {b.name: b for b in bots}
            self._owner = ({b.name: owner(b.key, self.groups) for b in bots}
                           if self.groups else {})
            self._stopped &= set(self._bots)
            if self.groups:
                specs = [self._group_spec(g) for g in self.groups]
                self.supervisor.apply(specs)
        if self.groups:
            self._tell_groups_to_reload()
        log.info("bots assigned", extra={
            "bots": len(bots), "groups": {g: self.bots_of(g) for g in self.groups}})
        return len(bots)

    def bots_of(self, group: str) -> list[str]:
        with self._lock:
            return sorted(n for n, g in self._owner.items() if g == group)

    def _group_dir(self, group: str) -> Path:
        path = self.run_dir / group
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_group_files(self, group: str) -> tuple[Path, Path]:
        d = self._group_dir(group)
        bots_file, stopped_file = d / "bots.yaml", d / "stopped"
        with self._lock:
            bots = [self._bots[n] for n in self.bots_of(group)]
            stopped = sorted(n for n in self._stopped if self._owner.get(n) == group)
        for path, text in ((bots_file, dump_bots(bots)),
                           (stopped_file, "".join(f"{n}\n" for n in stopped))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return bots_file, stopped_file

    def _group_spec(self, group: str) -> ProcessSpec:
        bots_file, stopped_file = self._write_group_files(group)
        env = inherited_env(self._env)
        env["PYTHONPATH"] = python_path(self._env.get("PYTHONPATH"))
        passthrough = {"AUTH_DIR": str(self.base.auth_dir.resolve()),
                       "WABOT_STOP_GRACE_SECONDS": str(self.base.stop_grace_s),
                       "WABOT_FEDERATE_METRICS": "1" if self.base.federate_metrics else "0",
                       "LOG_LEVEL": self.base.log_level}
        if self.base.database_url is not None:
            passthrough["DATABASE_URL"] = self.base.database_url.get_secret_value()
        if self.base.secrets_dir is not None:
            passthrough["WABOT_SECRETS_DIR"] = str(self.base.secrets_dir.resolve())
        if self._env.get("WABOT_WORKER_COMMAND"):
            passthrough["WABOT_WORKER_COMMAND"] = self._env["WABOT_WORKER_COMMAND"]
        env.update(passthrough)
        env.update({
            "ROLE": "monolith",
            "WABOT_HTTP_HOST": "127.0.0.1",
            "WABOT_CONTROLLER_TOKEN": self._internal_token,
            "WABOT_RUN_DIR": str(self._group_dir(group) / "run"),
        })
        return ProcessSpec(
            name=group,
            argv=(sys.executable, "-m", "fleet", "monolith", "--bots", str(bots_file),
                  "--group", group, "--stopped-file", str(stopped_file)),
            env=env, labels={"group": group}, port_env="WABOT_HTTP_PORT",
            health_path="/livez", ready_path="/readyz",
        )

    def _group_url(self, group: str) -> str | None:
        for st in self.supervisor.status(group):
            if st.state is State.RUNNING and st.port is not None:
                return f"http://127.0.0.1:{st.port}"
        return None

    def _tell_groups_to_reload(self) -> None:
        for group in self.groups:
            url = self._group_url(group)
            if url is not None:
                code, _ = _fetch_json(url + "/reload", self._internal_token, "POST")
                if code != 200:
                    log.warning("group did not reload; it reads its file at its next start",
                                extra={"group": group, "status": code})

    # --- views ------------------------------------------------------------------------------

    def _group_bots(self, group: str) -> dict[str, dict[str, Any]] | None:
        url = self._group_url(group)
        if url is None:
            return None
        code, body = _fetch_json(url + "/bots", self._internal_token)
        if code != 200 or not isinstance(body, list):
            return None
        return {b["name"]: b for b in body}

    def views(self) -> list[ControllerBotView]:
        with self._lock:
            bots = dict(self._bots)
        if self.observe_only:
            return self._observed_views(bots)
        with ThreadPoolExecutor(max_workers=max(1, len(self.groups))) as pool:
            reports = dict(zip(self.groups, pool.map(self._group_bots, self.groups),
                               strict=True))
        out = []
        for name, bot in sorted(bots.items()):
            group = self._owner.get(name)
            seen = (reports.get(group) or {}).get(name) if group else None
            if seen is not None:
                seen = {**seen, "group": group}
                out.append(ControllerBotView.model_validate(seen))
            else:
                out.append(self._unknown(bot, group))
        return out

    def _unknown(self, bot: BotDefinition, group: str | None) -> ControllerBotView:
        return ControllerBotView(
            name=bot.name, server_name=bot.server_name, bot_id=bot.bot_id, state="unknown",
            desired=bot.name not in self._stopped and not bot.spec.suspend,
            suspended=bot.spec.suspend, pid=None, port=None, restarts=0, last_exit_code=None,
            live=None, ready=None, started_at=None, group=group)

    def _bot_url(self, bot: BotDefinition) -> str:
        return self.settings.bot_url_template.format(
            name=bot.name, bot_id=bot.bot_id, server_name=bot.server_name).rstrip("/")

    def _observed_views(self, bots: Mapping[str, BotDefinition]) -> list[ControllerBotView]:
        def probe(bot: BotDefinition) -> ControllerBotView:
            base = self._bot_url(bot)
            live = http_ok(base + "/livez", 2.0)
            ready = http_ok(base + "/readyz", 2.0) if live else False
            view = self._unknown(bot, None)
            return view.model_copy(update={
                "state": State.RUNNING if live else "unknown", "live": live, "ready": ready})

        if not bots:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(bots))) as pool:
            return list(pool.map(probe, [bots[n] for n in sorted(bots)]))

    def group_views(self) -> list[GroupView]:
        out = []
        for st in self.supervisor.status():
            out.append(GroupView(
                name=st.name, state=st.state, pid=st.pid, port=st.port, restarts=st.restarts,
                last_exit_code=st.last_exit_code, live=st.live, bots=len(self.bots_of(st.name)),
                started_at=(datetime.fromtimestamp(st.started_at, UTC)
                            if st.started_at is not None else None)))
        return sorted(out, key=lambda g: g.name)

    # --- rollout ----------------------------------------------------------------------------

    def start_rollout(self) -> Rollout | None:
        """None when a rollout is already running (one at a time)."""
        with self._lock:
            if self._rollout is not None and self._rollout.state == "running":
                return None
            self._rollout = Rollout(id=secrets.token_hex(4), state="running")
            rollout = self._rollout
        threading.Thread(target=self._roll, args=(rollout,), name="fleet-rollout",
                         daemon=True).start()
        return rollout

    def _roll(self, rollout: Rollout) -> None:
        log.info("rollout started", extra={"rollout": rollout.id, "groups": self.groups})
        for group in self.groups:
            step = RolloutStep(group=group, started_at=datetime.now(UTC))
            rollout.steps.append(step)
            ok, detail = self.restart_group_and_wait(group, self.settings.rollout_timeout_s)
            step.finished_at, step.ok, step.detail = datetime.now(UTC), ok, detail
            log.info("rollout step done", extra={"rollout": rollout.id, "group": group,
                                                 "ok": ok, "detail": detail})
            if not ok:
                # Stop here: rolling the next group would take more bots down.
                rollout.state, rollout.error = "failed", f"{group}: {detail}"
                return
        rollout.state = "succeeded"

    def restart_group_and_wait(self, group: str, timeout: float) -> tuple[bool, str]:
        (before,) = self.supervisor.status(group)
        if not self.supervisor.restart(group):
            return False, "no such group"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (st,) = self.supervisor.status(group)
            if (st.state is State.RUNNING and st.pid != before.pid and st.live
                    and self._group_bots_back(group)):
                return True, "every wanted bot answers /livez"
            time.sleep(0.25)
        return False, f"its bots were not back within {timeout:.0f}s"

    def _group_bots_back(self, group: str) -> bool:
        report = self._group_bots(group)
        if report is None:
            return False
        want = set(self.bots_of(group))
        if set(report) != want:
            return False
        return all(b["live"] and b["state"] == "running" for b in report.values()
                   if b["desired"])

    # --- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        name = r"(?P<name>[a-z0-9-]+)"
        return [
            Route("GET", r"/livez", self._livez),
            Route("GET", r"/readyz", self._readyz),
            Route("GET", r"/metrics", self._metrics, auth=True),
            Route("GET", r"/bots", self._list, auth=True),
            Route("GET", rf"/bots/{name}", self._get, auth=True),
            Route("POST", rf"/bots/{name}/(?P<action>start|stop|restart)", self._act,
                  auth=True),
            Route("GET", r"/groups", self._groups, auth=True),
            Route("POST", r"/groups/rollout", self._rollout_start, auth=True),
            Route("GET", r"/groups/rollout", self._rollout_status, auth=True),
            Route("POST", rf"/groups/{name}/restart", self._group_restart, auth=True),
            Route("POST", r"/reload", self._reload, auth=True),
        ]

    def _livez(self, _req: Request) -> Response:
        age = time.monotonic() - self.supervisor.heartbeat
        ok = self.observe_only or age < 10.0
        return json_response(200 if ok else 503, Health(ok=ok, detail="controller alive"))

    def _readyz(self, _req: Request) -> Response:
        counts: dict[str, int] = {}
        for st in self.supervisor.status():
            counts[st.state.value] = counts.get(st.state.value, 0) + 1
        ok = self.observe_only or (self.supervisor.loaded and "pending" not in counts)
        return json_response(200 if ok else 503, Health(
            ok=ok, detail="groups started" if ok else "groups not started yet", bots=counts))

    def _list(self, _req: Request) -> Response:
        return json_response(200, self.views())

    def _get(self, req: Request) -> Response:
        for view in self.views():
            if view.name == req.params["name"]:
                return json_response(200, view)
        return error(404, f"no bot named {req.params['name']!r}")

    def _act(self, req: Request) -> Response:
        name, action = req.params["name"], req.params["action"]
        with self._lock:
            bot = self._bots.get(name)
            group = self._owner.get(name)
        if bot is None:
            return error(404, f"no bot named {name!r}")
        if self.observe_only or group is None:
            return error(501, "this controller only observes (WABOT_WORKER_GROUPS=0): "
                              f"use `docker compose {action} bot-{name}`")
        with self._lock:  # remembered, so a restarted group keeps a stopped bot stopped
            if action == "stop":
                self._stopped.add(name)
            else:
                self._stopped.discard(name)
        self._write_group_files(group)
        url = self._group_url(group)
        code = 0
        if url is not None:
            code, _ = _fetch_json(f"{url}/bots/{name}/{action}", self._internal_token, "POST")
        log.info("bot %s requested", action, extra={
            "bot": bot.bot_id, "server_name": bot.server_name, "group": group,
            "applied": code == 202})
        if code != 202:
            return error(503, f"{group} is not running; the {action} applies when it is back")
        return json_response(202, Accepted(name=name, action=action))

    def _groups(self, _req: Request) -> Response:
        return json_response(200, self.group_views())

    def _group_restart(self, req: Request) -> Response:
        if not self.supervisor.restart(req.params["name"]):
            return error(404, f"no group named {req.params['name']!r}")
        return json_response(202, Accepted(name=req.params["name"], action="restart"))

    def _rollout_start(self, _req: Request) -> Response:
        if self.observe_only:
            return error(501, "no worker groups to roll (WABOT_WORKER_GROUPS=0)")
        rollout = self.start_rollout()
        if rollout is None:
            return error(409, "a rollout is already running")
        return json_response(202, rollout)

    def _rollout_status(self, _req: Request) -> Response:
        if self._rollout is None:
            return error(404, "no rollout yet")
        return json_response(200, self._rollout)

    def _reload(self, _req: Request) -> Response:
        try:
            n = self.reload()
        except (BotsFileError, ConfigError) as exc:
            return error(422, str(exc))
        return json_response(200, Reloaded(bots=n))

    def _metrics(self, req: Request) -> Response:
        collector = UnitCollector(self.supervisor.status, "group", ["group"],
                                  scrape_up=lambda: self._scrape_up)
        federated = []
        if self.base.federate_metrics and req.query.get("federate", ["1"])[0] != "0":
            if self.observe_only:
                with self._lock:
                    bots = list(self._bots.values())
                targets: list[tuple[str, str, Mapping[str, str]]] = [
                    (b.bot_id, self._bot_url(b) + "/metrics",
                     {"bot": b.bot_id, "server_name": b.server_name}) for b in bots]
            else:
                targets = [(st.name, f"http://127.0.0.1:{st.port}/metrics", st.labels)
                           for st in self.supervisor.status()
                           if st.state is State.RUNNING and st.port is not None]
            # The groups' /metrics want their token; bot containers get none (never a token).
            auth = {} if self.observe_only else {
                "Authorization": f"Bearer {self._internal_token}"}
            parts, self._scrape_up = scrape_all(targets, timeout=5.0, headers=auth)
            federated = merge_expositions(parts)
        return Response(200, render([collector], federated), PROMETHEUS_TEXT)

    # --- run --------------------------------------------------------------------------------

    def run(self) -> int:
        def supervise(stop: threading.Event) -> None:
            if self.observe_only:
                while not stop.wait(1.0):
                    self.supervisor.heartbeat = time.monotonic()
            else:
                self.supervisor.run(stop, probe_interval_s=2.0)

        return serve_until_stopped(
            "controller", self.base.http_host, self.base.http_port, self.routes(),
            self.settings.token.get_secret_value(), reload=self.reload, supervise=supervise,
            own_run_dir=self.run_dir if self._own_run_dir else None,
            fields={"groups": len(self.groups), "bots": len(self._bots)})


def run(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wabot controller", description=(
        "Run the bots in N worker-group processes behind a token-protected API "
        "(ROLE=controller)."))
    p.add_argument("--bots", type=Path, help="bots file (default: $WABOT_BOTS_FILE; "
                   "else the bot_definition table at $WABOT_BOTS_DSN)")
    p.add_argument("--groups", type=int, help="worker groups (default: $WABOT_WORKER_GROUPS "
                   "or 2; 0 = observe containers)")
    p.add_argument("--host", help="listen address (default: $WABOT_HTTP_HOST, else "
                   "127.0.0.1; 0.0.0.0 in a Kubernetes pod)")
    p.add_argument("--port", type=int, help="listen port (default: $WABOT_HTTP_PORT or 5000)")
    args = p.parse_args(list(argv or []))
    env = dict(os.environ if env is None else env)
    if args.groups is not None:
        env["WABOT_WORKER_GROUPS"] = str(args.groups)
    try:
        settings = ControllerSettings.from_env(env, bots_file=args.bots, http_host=args.host,
                                               http_port=args.port)
        configure_logging(settings.base.log_level, component="controller")
        controller = Controller(settings, env=env)
        controller.reload()
    except (ConfigError, BotsFileError) as exc:
        print(f"wabot controller: {exc}", file=sys.stderr)
        return 2
    start_migrate_step(env)  # WABOT_MIGRATE_URL: once here; the groups never get it
    return controller.run()

