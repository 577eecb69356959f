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
  GET  /console/                  the web console (issue 27; fleet/console_web.py): sign in
                                  with the token, each bot's phase and QR code, actions

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
import secrets
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .botsfile import BotDefinition, BotsFileError
from .console import LocalBots, SessionPoller
from .console_web import FleetConsole
from .endpoint import (
    Accepted,
    BotView,
    FleetEndpoint,
    Health,
    MetricsTarget,
    Reloaded,
    add_endpoint_arguments,
    read_stopped_file,
    running_targets,
    serve_until_stopped,
    started_at,
    state_counts,
)
from .http import Request, Response, Route, error, json_response
from .logs import configure_logging
from .policy import RestartPolicy, State
from .schema import start_migrate_step
from .settings import (
    MIN_TOKEN_LENGTH,
    MonolithSettings,
    check_token_length,
    default_http_host,
    load_bots,
)
from .supervisor import Supervisor, UnitStatus
from .workers import (
    ConfigError,
    WorkerSettings,
    default_run_dir,
    inherited_env,
    worker_process,
)

# Imported from here by the controller, the tests and older callers.
__all__ = ["MIN_TOKEN_LENGTH", "Accepted", "BotView", "Health", "Monolith", "MonolithSettings",
           "Reloaded", "default_http_host", "load_bots", "run", "serve_until_stopped"]

log = logging.getLogger("wabot.fleet.monolith")


class Monolith(FleetEndpoint):
    unit = "bot"
    unit_labels = ("bot", "server_name")
    scrape_timeout_s = 2.0

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
        # Each worker's API token (its session for the console): random, in this process only.
        self._worker_tokens: dict[str, str] = {}
        self.sessions = SessionPoller(self.views, self.worker_token)
        self.console = FleetConsole(
            LocalBots(self, settings.group or "local", self.sessions),
            settings.token.get_secret_value() if settings.token else None)

    # --- bots -----------------------------------------------------------------------------

    def reload(self, bots: Sequence[BotDefinition] | None = None) -> int:
        """(Re)read the bots and make the running set match; returns the number of bots."""
        with self._reload_lock:
            if bots is None:
                bots = load_bots(self.settings)
            specs = [worker_process(b, self.worker_settings, self._worker_tokens.setdefault(
                b.name, secrets.token_urlsafe(32))) for b in bots]
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
            **st.run(), server_name=bot.server_name, bot_id=bot.bot_id,
            suspended=bot.spec.suspend, group=self.settings.group, started_at=started_at(st))

    # --- what the console asks (fleet/console_web.py) ----------------------------------------

    def pairing_method(self, name: str) -> str:
        bot = self._bots.get(name)
        return bot.spec.pairing.method if bot is not None else "qr"

    def worker_token(self, name: str) -> str | None:
        return self._worker_tokens.get(name)

    def set_running(self, name: str, running: bool) -> bool:
        return (self.supervisor.start if running else self.supervisor.stop)(name)

    def restart_process(self, name: str) -> bool:
        return self.supervisor.restart(name)

    # --- HTTP -----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        # With a token, the bot list and the metrics need it too.
        return [*self.bot_routes(self.settings.token is not None), *self.console.routes()]

    def _livez(self, _req: Request) -> Response:
        age = time.monotonic() - self.supervisor.heartbeat
        ok = age < 10.0
        return json_response(200 if ok else 503, Health(
            ok=ok, detail="supervisor loop alive" if ok else f"no tick for {age:.0f}s"))

    def _readyz(self, _req: Request) -> Response:
        statuses = self.supervisor.status()
        counts = state_counts(statuses)
        pending = [s.name for s in statuses if s.state is State.PENDING]
        ok = self.supervisor.loaded and not pending
        detail = "every wanted bot was started" if ok else (
            "bots not loaded yet" if not self.supervisor.loaded
            else f"not started yet: {', '.join(sorted(pending))}")
        return json_response(200 if ok else 503, Health(ok=ok, detail=detail, bots=counts))

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

    def federates(self) -> bool:
        return self.settings.federate_metrics

    def federation_targets(self) -> tuple[list[MetricsTarget], dict[str, str]]:
        return running_targets(self.supervisor, lambda st: st.labels.get("bot", st.name)), {}

    # --- run ------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; SIGHUP reloads. Supervision owns the main thread."""
        run_dir = self.worker_settings.run_dir if self._own_run_dir else None
        token = self.settings.token.get_secret_value() if self.settings.token else None
        return serve_until_stopped(
            "monolith", self.settings.http_host, self.settings.http_port, self.routes(), token,
            reload=self.reload, supervise=self._supervise, own_run_dir=run_dir,
            fields={"bots": len(self._bots)})


    def _supervise(self, stop: threading.Event) -> None:
        self.sessions.start(stop)
        self.supervisor.run(stop)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Run many bots, one OS process each, behind one HTTP endpoint (ROLE=monolith)."))
    add_endpoint_arguments(p)
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
        check_token_length(settings.token)
        fields = {"group": settings.group} if settings.group else {}
        configure_logging(settings.log_level, **fields)
        monolith = Monolith(settings, env=env)
        monolith.reload()
    except (ConfigError, BotsFileError) as exc:
        print(f"wabot monolith: {exc}", file=sys.stderr)
        return 2
    start_migrate_step(env)  # WABOT_MIGRATE_URL: the schema, as the owner role, once
    return monolith.run()
