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
otherwise, see fleet.settings.default_http_host):
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
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from .botsfile import BotDefinition, BotsFileError
from .console_proxy import GroupBots
from .console_web import FleetConsole
from .endpoint import (
    Accepted,
    FleetEndpoint,
    Health,
    MetricsTarget,
    add_endpoint_arguments,
    running_targets,
    serve_until_stopped,
    started_at,
    state_counts,
)
from .groups import ControllerBotView, GroupView, Rollouts, WorkerGroups
from .http import Request, Response, Route, error, json_response
from .logs import configure_logging
from .policy import RestartPolicy, State
from .schema import start_migrate_step
from .settings import ControllerSettings, load_bots
from .sharding import group_names
from .supervisor import Supervisor, http_ok
from .workers import ConfigError, default_run_dir

# Imported from here by the tests and older callers.
__all__ = ["Controller", "ControllerBotView", "ControllerSettings", "GroupView", "run"]

log = logging.getLogger("wabot.fleet.controller")


class Controller(FleetEndpoint):
    unit = "group"
    unit_labels = ("group",)
    scrape_timeout_s = 5.0

    def __init__(self, settings: ControllerSettings, env: Mapping[str, str] | None = None
                 ) -> None:
        self.settings = settings
        self.base = settings.base
        self._own_run_dir = self.base.run_dir is None
        self.run_dir = (self.base.run_dir or default_run_dir()).resolve()
        self.groups = group_names(settings.worker_groups)
        # Groups stop their bots first (bots' grace), so a group gets that and a margin.
        self.supervisor = Supervisor(RestartPolicy(grace_s=self.base.stop_grace_s + 15,
                                                   liveness_initial_delay_s=20))
        self.workers = WorkerGroups(self.groups, self.base, os.environ if env is None else env,
                                    self.run_dir, self.supervisor)
        self.rollouts = Rollouts(self.groups, self.workers.restart_and_wait,
                                 settings.rollout_timeout_s)
        self._scrape_up: dict[str, bool] = {}
        # The same console as a monolith's, fed by the groups' own (fleet/console_proxy.py).
        self.console = FleetConsole(
            GroupBots(self.workers, self.act_on,
                      lambda name: getattr(self._bots().get(name), "server_name", "")),
            settings.token.get_secret_value())

    @property
    def observe_only(self) -> bool:
        return not self.groups

    def _bots(self) -> dict[str, BotDefinition]:
        with self.workers.lock:
            return dict(self.workers.bots)

    def reload(self, bots: Sequence[BotDefinition] | None = None) -> int:
        if bots is None:
            bots = load_bots(self.base)
        self.workers.assign(bots)
        log.info("bots assigned", extra={
            "bots": len(bots), "groups": {g: self.workers.bots_of(g) for g in self.groups}})
        return len(bots)

    # --- views ------------------------------------------------------------------------------

    def views(self) -> list[ControllerBotView]:
        bots = self._bots()
        if self.observe_only:
            return self._observed_views(bots)
        with ThreadPoolExecutor(max_workers=max(1, len(self.groups))) as pool:
            reports = dict(zip(self.groups, pool.map(self.workers.report, self.groups),
                               strict=True))
        out = []
        for name, bot in sorted(bots.items()):
            group = self.workers.owner.get(name)
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
            desired=bot.name not in self.workers.stopped and not bot.spec.suspend,
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
                last_exit_code=st.last_exit_code, live=st.live,
                bots=len(self.workers.bots_of(st.name)), started_at=started_at(st)))
        return sorted(out, key=lambda g: g.name)

    # --- HTTP -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        name = r"(?P<name>[a-z0-9-]+)"
        return self.bot_routes(
            True,
            Route("GET", r"/groups", self._groups, auth=True),
            Route("POST", r"/groups/rollout", self._rollout_start, auth=True),
            Route("GET", r"/groups/rollout", self._rollout_status, auth=True),
            Route("POST", rf"/groups/{name}/restart", self._group_restart, auth=True),
        ) + self.console.routes()

    def _livez(self, _req: Request) -> Response:
        age = time.monotonic() - self.supervisor.heartbeat
        ok = self.observe_only or age < 10.0
        return json_response(200 if ok else 503, Health(ok=ok, detail="controller alive"))

    def _readyz(self, _req: Request) -> Response:
        counts = state_counts(self.supervisor.status())
        ok = self.observe_only or (self.supervisor.loaded and "pending" not in counts)
        return json_response(200 if ok else 503, Health(
            ok=ok, detail="groups started" if ok else "groups not started yet", bots=counts))

    def _get(self, req: Request) -> Response:
        for view in self.views():
            if view.name == req.params["name"]:
                return json_response(200, view)
        return error(404, f"no bot named {req.params['name']!r}")

    def _act(self, req: Request) -> Response:
        name, action = req.params["name"], req.params["action"]
        status, message = self.act_on(name, action)
        if status != 202:
            return error(status, message)
        return json_response(202, Accepted(name=name, action=action))

    def act_on(self, name: str, action: str) -> tuple[int, str]:
        """A bot's start/stop/restart through its group, remembered across group restarts
        (the API's and the console's): (202, "") or the refusal's status and words."""
        with self.workers.lock:
            bot = self.workers.bots.get(name)
            group = self.workers.owner.get(name)
        if bot is None:
            return 404, f"no bot named {name!r}"
        if self.observe_only or group is None:
            return 501, ("this controller only observes (WABOT_WORKER_GROUPS=0): "
                         f"use `docker compose {action} bot-{name}`")
        self.workers.remember(name, action)
        code, _ = self.workers.call(group, f"/bots/{name}/{action}", "POST")
        log.info("bot %s requested", action, extra={
            "bot": bot.bot_id, "server_name": bot.server_name, "group": group,
            "applied": code == 202})
        if code != 202:
            return 503, f"{group} is not running; the {action} applies when it is back"
        return 202, ""

    def _groups(self, _req: Request) -> Response:
        return json_response(200, self.group_views())

    def _group_restart(self, req: Request) -> Response:
        if not self.supervisor.restart(req.params["name"]):
            return error(404, f"no group named {req.params['name']!r}")
        return json_response(202, Accepted(name=req.params["name"], action="restart"))

    def _rollout_start(self, _req: Request) -> Response:
        if self.observe_only:
            return error(501, "no worker groups to roll (WABOT_WORKER_GROUPS=0)")
        rollout = self.rollouts.start()
        if rollout is None:
            return error(409, "a rollout is already running")
        return json_response(202, rollout)

    def _rollout_status(self, _req: Request) -> Response:
        if self.rollouts.current is None:
            return error(404, "no rollout yet")
        return json_response(200, self.rollouts.current)

    def federates(self) -> bool:
        return self.base.federate_metrics

    def federation_targets(self) -> tuple[list[MetricsTarget], dict[str, str]]:
        """Bot containers in observe-only mode (never given a token), else the groups, whose
        /metrics want the internal token."""
        if not self.observe_only:
            return (running_targets(self.supervisor, lambda st: st.name),
                    {"Authorization": f"Bearer {self.workers.token}"})
        bots = list(self._bots().values())
        return [(b.bot_id, self._bot_url(b) + "/metrics",
                 {"bot": b.bot_id, "server_name": b.server_name}) for b in bots], {}

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
            fields={"groups": len(self.groups), "bots": len(self._bots())})


def run(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wabot controller", description=(
        "Run the bots in N worker-group processes behind a token-protected API "
        "(ROLE=controller)."))
    add_endpoint_arguments(p)
    p.add_argument("--groups", type=int, help="worker groups (default: $WABOT_WORKER_GROUPS "
                   "or 2; 0 = observe containers)")
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

