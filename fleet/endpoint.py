"""What the monolith and the controller share: the bodies of their API, the /reload and
/metrics handlers, the flags that pick the bots and the address, and the main loop (signals,
the HTTP endpoint, clean-up). Each of them is a `FleetEndpoint` that says what its units are
(bots or worker groups) and where their metrics are; the rest is here, once."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .botsfile import BotDefinition, BotsFileError
from .http import PROMETHEUS_TEXT, ApiServer, Request, Response, Route, error, json_response
from .metrics import UnitCollector, merge_expositions, render, scrape_all
from .policy import State
from .supervisor import Supervisor, UnitRun, UnitStatus
from .workers import ConfigError

# The name these lines have always had (the loop lived in fleet.monolith first).
log = logging.getLogger("wabot.fleet.monolith")

# (unit, URL of its /metrics, the labels its series get)
MetricsTarget = tuple[str, str, Mapping[str, str]]


class BotView(UnitRun):
    """One bot in GET /bots: its process's run, with who the bot is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    server_name: str
    bot_id: str
    suspended: bool
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


def started_at(st: UnitStatus) -> datetime | None:
    """When the unit's current process started, as the API shows it."""
    return datetime.fromtimestamp(st.started_at, UTC) if st.started_at is not None else None


def state_counts(statuses: Iterable[UnitStatus]) -> dict[str, int]:
    """How many units are in each state, for /readyz."""
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st.state.value] = counts.get(st.state.value, 0) + 1
    return counts


class FleetEndpoint:
    """The handlers the monolith and the controller share. A subclass sets `supervisor`,
    `unit`/`unit_labels` (the series' labels) and `scrape_timeout_s`, and says how to reload,
    list and federate."""

    supervisor: Supervisor
    unit: str
    unit_labels: tuple[str, ...]
    scrape_timeout_s: float
    _scrape_up: dict[str, bool]

    def reload(self, bots: Sequence[BotDefinition] | None = None) -> int:
        raise NotImplementedError

    def views(self) -> Sequence[BaseModel]:
        raise NotImplementedError

    def federates(self) -> bool:
        raise NotImplementedError

    def federation_targets(self) -> tuple[list[MetricsTarget], dict[str, str]]:
        """Whose /metrics to merge into ours, and the headers to scrape them with."""
        raise NotImplementedError

    def _livez(self, _req: Request) -> Response:
        raise NotImplementedError

    def _readyz(self, _req: Request) -> Response:
        raise NotImplementedError

    def _get(self, _req: Request) -> Response:
        raise NotImplementedError

    def _act(self, _req: Request) -> Response:
        raise NotImplementedError

    def bot_routes(self, read_auth: bool, *extra: Route) -> list[Route]:
        """The API both serve: probes open, reading the bots (which names every bot and tenant)
        behind `read_auth`, acting always behind the token; `extra` goes before /reload."""
        name = r"(?P<name>[a-z0-9-]+)"
        return [
            Route("GET", r"/livez", self._livez),
            Route("GET", r"/readyz", self._readyz),
            Route("GET", r"/metrics", self._metrics, auth=read_auth),
            Route("GET", r"/bots", self._list, auth=read_auth),
            Route("GET", rf"/bots/{name}", self._get, auth=read_auth),
            Route("POST", rf"/bots/{name}/(?P<action>start|stop|restart)", self._act,
                  auth=True),
            *extra,
            Route("POST", r"/reload", self._reload, auth=True),
        ]

    def _list(self, _req: Request) -> Response:
        return json_response(200, self.views())

    def _reload(self, _req: Request) -> Response:
        try:
            n = self.reload()
        except (BotsFileError, ConfigError) as exc:
            return error(422, str(exc))
        return json_response(200, Reloaded(bots=n))

    def _metrics(self, req: Request) -> Response:
        collector = UnitCollector(self.supervisor.status, self.unit, list(self.unit_labels),
                                  scrape_up=lambda: self._scrape_up)
        federated = []
        if self.federates() and req.query.get("federate", ["1"])[0] != "0":
            targets, headers = self.federation_targets()
            parts, self._scrape_up = scrape_all(targets, timeout=self.scrape_timeout_s,
                                                headers=headers)
            federated = merge_expositions(parts)
        return Response(200, render([collector], federated), PROMETHEUS_TEXT)


def running_targets(supervisor: Supervisor, unit: Callable[[UnitStatus], str]
                    ) -> list[MetricsTarget]:
    """The /metrics of every running unit on its loopback port."""
    return [(unit(st), f"http://127.0.0.1:{st.port}/metrics", st.labels)
            for st in supervisor.status()
            if st.state is State.RUNNING and st.port is not None]


def add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    """The flags both roles take: where the bots are and where to listen."""
    p.add_argument("--bots", type=Path, help="bots file (default: $WABOT_BOTS_FILE; "
                   "else the bot_definition table at $WABOT_BOTS_DSN)")
    p.add_argument("--host", help="listen address (default: $WABOT_HTTP_HOST, else "
                   "127.0.0.1; 0.0.0.0 in a Kubernetes pod)")
    p.add_argument("--port", type=int, help="listen port (default: $WABOT_HTTP_PORT or 5000)")


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


