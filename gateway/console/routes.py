"""The console's routes and life cycle on an aiohttp application."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wabot.console.session import Signer

from .access import Access
from .actions import Actions
from .fleet import Fleet
from .settings import ConsoleSettings
from .stream import Stream
from .web import ConsoleWeb, security_headers

BOT = "/console/api/bots/{namespace}/{bot}"


def _api_client() -> Any:
    from ..kube import api_client

    return api_client()


def mount(app: web.Application, tenants: Any, namespaces: tuple[str, ...],
          settings: ConsoleSettings) -> None:
    # Two clients: the watch's thread holds one connection open for minutes at a time.
    watch_client, api = _api_client(), _api_client()
    registry = getattr(getattr(tenants, "metrics", None), "registry", None)  # the gateway's
    fleet = Fleet(watch_client, namespaces, registry)
    console = ConsoleWeb(Signer(settings.secret, settings.session_hours * 3600), tenants,
                         Access(api), fleet, Actions(api))
    stream = Stream(console)

    async def redirect(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    r = app.router
    r.add_get("/console", redirect)
    r.add_get("/console/", console.shell)
    r.add_get("/console/bots/{namespace}/{bot}", console.shell)
    r.add_get("/console/static/{file}", console.static)
    r.add_post("/console/api/login", console.login)
    r.add_post("/console/api/logout", console.logout)
    r.add_get("/console/api/me", console.me)
    r.add_get("/console/api/stream", stream.handle)
    r.add_get(BOT, console.bot)
    r.add_get(BOT + "/qr.svg", console.qr)
    r.add_post(BOT + "/actions/{action}", console.act)
    app.on_response_prepare.append(security_headers)

    async def start(_app: web.Application) -> None:
        fleet.start()

    async def shutdown(_app: web.Application) -> None:
        fleet.close_streams()

    async def stop(_app: web.Application) -> None:
        fleet.stop()
        for c in (watch_client, api):
            c.close()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(stop)
