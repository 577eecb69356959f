"""`ROLE=monolith` (the seed's Tier 1): one command runs every bot of a bots file (or of the
`bot_definition` table) behind one HTTP endpoint.

Each bot still runs in an OS process of its own, the unchanged worker: neonize aborts a process
that hosts several clients (`fatal error: concurrent map writes`), which no Python code can
catch, and a process is the only boundary that keeps one bot's crash, leak or stuck call away
from the others. The monolith is the supervisor of those processes plus the endpoint:

  GET  /livez, /readyz            the supervisor's loop is alive / every wanted bot was started
  GET  /bots, /bots/{name}        name, serverName, state, restarts, pid, ... per bot
  GET  /metrics                   the fleet's series + every bot's /metrics, merged
  POST /bots/{name}/start|stop|restart, POST /reload
                                  only with WABOT_CONTROLLER_TOKEN set (bearer token); with a
                                  token, GET /bots and /metrics (which name every bot and
                                  tenant) need it too

It listens on 127.0.0.1 unless told otherwise (WABOT_HTTP_HOST / --host), or on 0.0.0.0 in a
Kubernetes pod, where probes and Services reach the pod's address.

SIGHUP (or POST /reload) re-reads the bots: new bots start, removed ones stop, a changed spec is
rewritten to the bot's spec file (the worker applies commands/settings/features/rateLimit
without a restart) and the bot is restarted only when something else changed.

A worker group of the controller is this same program on a loopback port with a subset file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from wabot.settings import Dsn, ListenHost, LogLevel, check_dsn, first_problem

from .botsfile import BotDefinition, BotsFileError, load_bots_file
from .http import (
    PROMETHEUS_TEXT,
    ApiServer,
    Request,
    Response,
    Route,
    error,
    json_response,
)
from .logs import configure_logging
from .metrics import UnitCollector, merge_expositions, render, scrape_all
from .policy import RestartPolicy, State
from .schema import start_migrate_step
from .supervisor import Supervisor, UnitStatus
from .workers import (
    WORKER_ARGV,
    ConfigError,
    WorkerSettings,
    default_run_dir,
    inherited_env,
    worker_process,
)

log = logging.getLogger("wabot.fleet.monolith")

DEFAULT_HTTP_PORT = 5000  # the seed's port
LOOPBACK = "127.0.0.1"
MIN_TOKEN_LENGTH = 16


class MonolithSettings(BaseModel):
    """The monolith's environment (and flags), validated before any bot starts."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    bots_file: Path | None = None
    bots_dsn: Dsn | None = None
    http_host: ListenHost = LOOPBACK
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=0, le=65535)
    token: SecretStr | None = None
    auth_dir: Path = Path("./data")
    run_dir: Path | None = None
    database_url: Dsn | None = None
    secrets_dir: Path | None = None
    worker_argv: tuple[str, ...] = Field(default=WORKER_ARGV, min_length=1)
    federate_metrics: bool = True
    stop_grace_s: float = Field(default=30.0, gt=0, le=3600)
    log_level: LogLevel = "INFO"
    group: str | None = None
    stopped: tuple[str, ...] = ()
    # Where bots_file came from, so a problem in the file names the setting (or the flag).
    bots_file_setting: Literal["WABOT_BOTS_FILE", "--bots"] = "WABOT_BOTS_FILE"

    @field_validator("bots_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                with value.open("rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value

    @field_validator("auth_dir", "run_dir")
    @classmethod
    def _directory_or_absent(cls, value: Path | None) -> Path | None:
        # Created when missing; a file in the way would fail every bot, one by one.
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("secrets_dir")
    @classmethod
    def _directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory (it holds <secret>/<key> files)")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> MonolithSettings:
        def get(key: str) -> str | None:
            value = env.get(key, "").strip()
            return value or None

        raw: dict[str, Any] = {
            "bots_file": get("WABOT_BOTS_FILE"),
            "bots_dsn": get("WABOT_BOTS_DSN"),
            "http_host": get("WABOT_HTTP_HOST"),
            "http_port": get("WABOT_HTTP_PORT"),
            "token": get("WABOT_CONTROLLER_TOKEN"),
            "auth_dir": get("AUTH_DIR"),
            "run_dir": get("WABOT_RUN_DIR"),
            "database_url": get("DATABASE_URL"),
            "secrets_dir": get("WABOT_SECRETS_DIR"),
            "worker_argv": _command("WABOT_WORKER_COMMAND", get("WABOT_WORKER_COMMAND")),
            "federate_metrics": get("WABOT_FEDERATE_METRICS"),
            "stop_grace_s": get("WABOT_STOP_GRACE_SECONDS"),
            "log_level": get("LOG_LEVEL"),
        }
        given = {k: v for k, v in overrides.items() if v is not None}
        raw.update(given)
        if "bots_file" in given:
            raw["bots_file_setting"] = "--bots"
        if raw["http_host"] is None:
            raw["http_host"] = default_http_host(env)
        if (migrate_url := get("WABOT_MIGRATE_URL")) is not None:
            # Used by the migrate step after the bots start: a malformed one is a setting.
            try:
                check_dsn(migrate_url)
            except ValueError as exc:
                raise ConfigError(f"WABOT_MIGRATE_URL: {exc}") from None
        try:
            return cls.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValidationError as exc:
            names = {**SETTING_NAMES, **{k: FLAG_NAMES[k] for k in given if k in FLAG_NAMES}}
            raise ConfigError(first_problem(exc, names)) from None


# The variable (or, when given, the flag) each setting comes from, for error messages.
SETTING_NAMES = {
    "bots_file": "WABOT_BOTS_FILE", "bots_dsn": "WABOT_BOTS_DSN",
    "http_host": "WABOT_HTTP_HOST", "http_port": "WABOT_HTTP_PORT",
    "token": "WABOT_CONTROLLER_TOKEN", "auth_dir": "AUTH_DIR", "run_dir": "WABOT_RUN_DIR",
    "database_url": "DATABASE_URL", "secrets_dir": "WABOT_SECRETS_DIR",
    "worker_argv": "WABOT_WORKER_COMMAND", "federate_metrics": "WABOT_FEDERATE_METRICS",
    "stop_grace_s": "WABOT_STOP_GRACE_SECONDS", "log_level": "LOG_LEVEL",
}
FLAG_NAMES = {"bots_file": "--bots", "http_host": "--host", "http_port": "--port",
              "group": "--group", "stopped": "--stopped-file"}


def _command(name: str, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:  # an unbalanced quote
        raise ConfigError(f"{name}: not a command line ({exc})") from None


def default_http_host(env: Mapping[str, str]) -> str:
    """Loopback outside Kubernetes: the API names every bot and tenant and, with a token,
    controls them, and a laptop or VM is often on a network it does not own. Listening
    elsewhere is a deliberate setting (WABOT_HTTP_HOST=0.0.0.0, as the generated Compose file
    does). In a pod (KUBERNETES_SERVICE_HOST set) only the pod's address reaches the kubelet's
    probes and a Service, and the pod network is the cluster's to police."""
    return "0.0.0.0" if env.get("KUBERNETES_SERVICE_HOST", "").strip() else LOOPBACK


def load_bots(settings: MonolithSettings) -> list[BotDefinition]:
    """The bots file wins over the database; one of them is required."""
    if settings.bots_file is not None:
        return load_bots_file(settings.bots_file,
                              f"{settings.bots_file_setting} {settings.bots_file}")
    if settings.bots_dsn is not None:
        from .botsdb import engine_for, load_bots_from_db

        engine = engine_for(settings.bots_dsn.get_secret_value())
        try:
            return load_bots_from_db(engine, "WABOT_BOTS_DSN")
        finally:
            engine.dispose()
    raise ConfigError("no bots: set WABOT_BOTS_FILE (or --bots PATH) or WABOT_BOTS_DSN")


class BotView(BaseModel):
    """One bot in GET /bots."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    server_name: str
    bot_id: str
    state: State
    desired: bool
    suspended: bool
    pid: int | None
    port: int | None
    restarts: int
    last_exit_code: int | None
    live: bool | None
    ready: bool | None
    started_at: datetime | None
    group: str | None = None


class Health(BaseModel):
    ok: bool
    detail: str
    bots: dict[str, int] = Field(default_factory=dict)


class Accepted(BaseModel):
    name: str
    action: str


class Reloaded(BaseModel):
    bots: int


class Monolith:
    def __init__(self, settings: MonolithSettings, supervisor: Supervisor | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._own_run_dir = settings.run_dir is None
        run_dir = settings.run_dir or default_run_dir()
        self.worker_settings = WorkerSettings(
            auth_dir=settings.auth_dir, run_dir=run_dir,
            database_url=(settings.database_url.get_secret_value()
                          if settings.database_url else None),
            secrets_dir=settings.secrets_dir, worker_argv=settings.worker_argv,
            base_env=inherited_env(os.environ if env is None else env),
        )
        self.supervisor = supervisor or Supervisor(RestartPolicy(grace_s=settings.stop_grace_s))
        self._bots: dict[str, BotDefinition] = {}
        self._reload_lock = threading.Lock()
        self._scrape_up: dict[str, bool] = {}
        self._started = False

    # --- bots -----------------------------------------------------------------------------

    def reload(self, bots: Sequence[BotDefinition] | None = None) -> int:
        """(Re)read the bots and make the running set match; returns the number of bots."""
        with self._reload_lock:
            if bots is None:
                bots = load_bots(self.settings)
            specs = [worker_process(b, self.worker_settings) for b in bots]
            stopped = {b.name for b in bots if b.spec.suspend}
            if not self._started:  # the controller's record of bots stopped on request
                stopped |= set(self.settings.stopped)
            else:
                stopped |= {s.name for s in self.supervisor.status() if not s.desired
                            and s.name in self._bots and not self._bots[s.name].spec.suspend}
            self._bots = {b.name: b for b in bots}
            self.supervisor.apply(specs, stopped=stopped)
            self._started = True
            log.info("bots loaded", extra={"bots": len(bots), "suspended": len(stopped)})
            return len(bots)

    def views(self, name: str | None = None) -> list[BotView]:
        out = []
        for st in self.supervisor.status(name):
            bot = self._bots.get(st.name)
            if bot is None:  # being removed
                continue
            out.append(self._view(bot, st))
        return sorted(out, key=lambda v: v.name)

    def _view(self, bot: BotDefinition, st: UnitStatus) -> BotView:
        return BotView(
            name=bot.name, server_name=bot.server_name, bot_id=bot.bot_id, state=st.state,
            desired=st.desired, suspended=bot.spec.suspend, pid=st.pid, port=st.port,
            restarts=st.restarts, last_exit_code=st.last_exit_code, live=st.live,
            ready=st.ready, group=self.settings.group,
            started_at=(datetime.fromtimestamp(st.started_at, UTC)
                        if st.started_at is not None else None),
        )

    # --- HTTP -----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        guarded = self.settings.token is not None  # with a token, the bot list needs it too
        return [
            Route("GET", r"/livez", self._livez),
            Route("GET", r"/readyz", self._readyz),
            Route("GET", r"/metrics", self._metrics, auth=guarded),
            Route("GET", r"/bots", self._list, auth=guarded),
            Route("GET", r"/bots/(?P<name>[a-z0-9-]+)", self._get, auth=guarded),
            Route("POST", r"/bots/(?P<name>[a-z0-9-]+)/(?P<action>start|stop|restart)",
                  self._act, auth=True),
            Route("POST", r"/reload", self._reload, auth=True),
        ]

    def _livez(self, _req: Request) -> Response:
        age = time.monotonic() - self.supervisor.heartbeat
        ok = age < 10.0
        return json_response(200 if ok else 503, Health(
            ok=ok, detail="supervisor loop alive" if ok else f"no tick for {age:.0f}s"))

    def _readyz(self, _req: Request) -> Response:
        counts: dict[str, int] = {}
        statuses = self.supervisor.status()
        for st in statuses:
            counts[st.state.value] = counts.get(st.state.value, 0) + 1
        pending = [s.name for s in statuses if s.state is State.PENDING]
        ok = self.supervisor.loaded and not pending
        detail = "every wanted bot was started" if ok else (
            "bots not loaded yet" if not self.supervisor.loaded
            else f"not started yet: {', '.join(sorted(pending))}")
        return json_response(200 if ok else 503, Health(ok=ok, detail=detail, bots=counts))

    def _list(self, _req: Request) -> Response:
        return json_response(200, self.views())

    def _get(self, req: Request) -> Response:
        views = self.views(req.params["name"])
        if not views:
            return error(404, f"no bot named {req.params['name']!r}")
        return json_response(200, views[0])

    def _act(self, req: Request) -> Response:
        name, action = req.params["name"], req.params["action"]
        fn = {"start": self.supervisor.start, "stop": self.supervisor.stop,
              "restart": self.supervisor.restart}[action]
        if name not in self._bots or not fn(name):
            return error(404, f"no bot named {name!r}")
        log.info("bot %s requested", action, extra={
            "bot": self._bots[name].bot_id, "server_name": self._bots[name].server_name})
        return json_response(202, Accepted(name=name, action=action))

    def _reload(self, _req: Request) -> Response:
        try:
            n = self.reload()
        except (BotsFileError, ConfigError) as exc:
            return error(422, str(exc))
        return json_response(200, Reloaded(bots=n))

    def _metrics(self, req: Request) -> Response:
        collector = UnitCollector(self.supervisor.status, "bot", ["bot", "server_name"],
                                  scrape_up=lambda: self._scrape_up)
        federated = []
        if self.settings.federate_metrics and req.query.get("federate", ["1"])[0] != "0":
            targets = [
                (st.labels.get("bot", st.name), f"http://127.0.0.1:{st.port}/metrics",
                 st.labels)
                for st in self.supervisor.status()
                if st.state is State.RUNNING and st.port is not None
            ]
            parts, self._scrape_up = scrape_all(targets, timeout=2.0)
            federated = merge_expositions(parts)
        return Response(200, render([collector], federated), PROMETHEUS_TEXT)

    # --- run ------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; SIGHUP reloads. Supervision owns the main thread."""
        run_dir = self.worker_settings.run_dir if self._own_run_dir else None
        token = self.settings.token.get_secret_value() if self.settings.token else None
        return serve_until_stopped(
            "monolith", self.settings.http_host, self.settings.http_port, self.routes(), token,
            reload=self.reload, supervise=self.supervisor.run, own_run_dir=run_dir,
            fields={"bots": len(self._bots)})


def serve_until_stopped(kind: str, host: str, port: int, routes: Sequence[Route],
                        token: str | None, *,
                        reload: Callable[[], object],
                        supervise: Callable[[threading.Event], object],
                        own_run_dir: Path | None, fields: Mapping[str, object]) -> int:
    """The main loop the monolith and the controller share: signals (SIGTERM/SIGINT stop,
    SIGHUP reloads on a side thread so a slow reload never blocks supervision), the HTTP
    endpoint, and a clean-up of the run directory the process created itself.

    A failed reload keeps the running bots as they are: a typo in the bots file must not take
    the fleet down.
    """
    stop = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        log.info("signal received: stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())

    def reloader() -> None:
        while not stop.is_set():
            if reload_requested.wait(0.5):
                reload_requested.clear()
                try:
                    reload()
                except (BotsFileError, ConfigError) as exc:
                    log.error("reload failed; the running bots stay as they are",
                              extra={"error": str(exc)})

    try:
        server = ApiServer(host, port, routes, token).start()
    except OSError as exc:
        print(f"wabot {kind}: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    log.info("serving", extra={"host": host, "port": server.port, **fields})
    threading.Thread(target=reloader, name="fleet-reload", daemon=True).start()
    try:
        supervise(stop)
    finally:
        server.stop()
        if own_run_dir is not None:
            shutil.rmtree(own_run_dir, ignore_errors=True)
    log.info("stopped")
    return 0


def read_stopped_file(path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return ()


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Run many bots, one OS process each, behind one HTTP endpoint (ROLE=monolith)."))
    p.add_argument("--bots", type=Path, help="bots file (default: $WABOT_BOTS_FILE; "
                   "else the bot_definition table at $WABOT_BOTS_DSN)")
    p.add_argument("--host", help="listen address (default: $WABOT_HTTP_HOST, else "
                   "127.0.0.1; 0.0.0.0 in a Kubernetes pod)")
    p.add_argument("--port", type=int, help="listen port (default: $WABOT_HTTP_PORT or 5000)")
    p.add_argument("--group", help=argparse.SUPPRESS)  # set by the controller
    # Set by the controller: a file listing the bots stopped through its API (one per line).
    p.add_argument("--stopped-file", type=Path, help=argparse.SUPPRESS)
    return p


def run(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser("wabot monolith").parse_args(list(argv or []))
    env = os.environ if env is None else env
    try:
        settings = MonolithSettings.from_env(
            env, bots_file=args.bots, http_host=args.host, http_port=args.port,
            group=args.group, stopped=read_stopped_file(args.stopped_file))
        if settings.token is not None and len(settings.token.get_secret_value()) < \
                MIN_TOKEN_LENGTH:
            raise ConfigError(f"WABOT_CONTROLLER_TOKEN must be at least {MIN_TOKEN_LENGTH} "
                              "characters")
        fields = {"group": settings.group} if settings.group else {}
        configure_logging(settings.log_level, **fields)
        monolith = Monolith(settings, env=env)
        monolith.reload()
    except (ConfigError, BotsFileError) as exc:
        print(f"wabot monolith: {exc}", file=sys.stderr)
        return 2
    start_migrate_step(env)  # WABOT_MIGRATE_URL: the schema, as the owner role, once
    return monolith.run()
