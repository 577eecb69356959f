"""A small HTTP API on the standard library's threading server, shared by the monolith, the
worker groups and the controller.

The standard library and not aiohttp: the monolith ships in the worker image, which has no
aiohttp, and a handful of JSON endpoints polled by humans and Prometheus do not need an event
loop. Routes that change or reveal the fleet (with a token set, /metrics too: it names every bot
and tenant) can require a bearer token, compared in constant time so the token cannot be
guessed byte by byte from response times.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from wabot import httproutes, httpserver
from wabot.httproutes import Route as Route
from wabot.httpserver import HttpServer, Limits
from wabot.httpserver import Request as Request
from wabot.httpserver import Response as Response  # the routes' answers are the kit's

log = logging.getLogger("wabot.fleet.http")

MAX_BODY = 64 * 1024
# Humans, Prometheus and the controller's fan-out: a few connections at a time.
LIMITS = Limits(max_body=MAX_BODY, timeout_s=10.0, max_connections=64)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class ErrorBody(BaseModel):
    error: str


def json_response(status: int, payload: BaseModel | Sequence[BaseModel]) -> Response:
    if isinstance(payload, BaseModel):
        data: Any = payload.model_dump(mode="json", by_alias=True)
    else:
        data = [p.model_dump(mode="json", by_alias=True) for p in payload]
    return Response(status, json.dumps(data).encode() + b"\n")


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = json_response(status, ErrorBody(error=message)).body
    return Response(status, body, headers=dict(headers or {}))


def _refuse(status: int, _code: str, message: str, headers: Mapping[str, str]) -> Response:
    return error(status, message, headers)


def route_path(path: str) -> str:
    """The path the routes match: without a trailing slash (/bots/ is /bots)."""
    return path.rstrip("/") or "/"


def dispatch(routes: Sequence[Route], token: str | None, req: Request) -> Response:
    return httproutes.dispatch(routes, token, req, _refuse,
                               disabled="the control API is disabled: set "
                                        "WABOT_CONTROLLER_TOKEN")


class ApiServer(HttpServer):
    """Serves `routes` on a daemon thread; `port=0` picks a free port (see `.port`).

    The connection handling (body limits before auth, per-request deadline, connection cap) is
    the shared kit's (`wabot.httpserver`); this adds routing and the bearer token. A request
    reaches its route as the kit's own Request with only the path normalized (`replace`, so
    the body buffer of a route that takes its body over and any later field carry through),
    and the kit picks a route's body limit and body handling by that same path."""

    def __init__(self, host: str, port: int, routes: Sequence[Route],
                 token: str | None = None, limits: Limits | None = None) -> None:
        self.routes = list(routes)
        self.token = token

        def handle(req: httpserver.Request) -> Response:
            return dispatch(self.routes, self.token, replace(req, path=route_path(req.path)))

        per_route = httproutes.limits_for(self.routes, limits or LIMITS, token)
        takes = per_route.takes_body
        kit_limits = replace(
            per_route,
            body_limit=lambda method, path, auth: per_route.max_body_for(
                method, route_path(path), auth),
            takes_body=None if takes is None else (
                lambda method, path: takes(method, route_path(path))))
        super().__init__(host, port, handle, limits=kit_limits,
                         name="fleet-http", server_version="wabot-fleet", access_log=log)
