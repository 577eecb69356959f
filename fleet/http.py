"""A small HTTP API on the standard library's threading server, shared by the monolith, the
worker groups and the controller.

The standard library and not aiohttp: the monolith ships in the worker image, which has no
aiohttp, and a handful of JSON endpoints polled by humans and Prometheus do not need an event
loop. Routes that change or reveal the fleet (with a token set, /metrics too: it names every bot
and tenant) can require a bearer token, compared in constant time so the token cannot be
guessed byte by byte from response times.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from wabot import httpserver
from wabot.httpserver import HttpServer, Limits
from wabot.httpserver import Response as Response  # the routes' answers are the kit's

log = logging.getLogger("wabot.fleet.http")

MAX_BODY = 64 * 1024
# Humans, Prometheus and the controller's fan-out: a few connections at a time.
LIMITS = Limits(max_body=MAX_BODY, timeout_s=10.0, max_connections=64)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)


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


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # e.g. r"/bots/(?P<name>[^/]+)/restart"
    handler: Handler
    auth: bool = False

    def match(self, path: str) -> dict[str, str] | None:
        m = re.fullmatch(self.pattern, path)
        return m.groupdict() if m else None


def token_ok(presented: str | None, token: str) -> bool:
    if not presented or not presented.startswith("Bearer "):
        return False
    return hmac.compare_digest(presented[len("Bearer "):].strip().encode(), token.encode())


def dispatch(routes: Sequence[Route], token: str | None, req: Request) -> Response:
    allowed: list[str] = []
    for route in routes:
        params = route.match(req.path)
        if params is None:
            continue
        if route.method != req.method:
            allowed.append(route.method)
            continue
        if route.auth:
            if token is None:
                return error(403, "the control API is disabled: set WABOT_CONTROLLER_TOKEN")
            if not token_ok(req.headers.get("authorization"), token):
                return error(401, "missing or wrong bearer token",
                             {"WWW-Authenticate": 'Bearer realm="wabot"'})
        return route.handler(Request(req.method, req.path, req.query, req.headers, req.body,
                                     params))
    if allowed:
        return error(405, f"use {', '.join(sorted(set(allowed)))}",
                     {"Allow": ", ".join(sorted(set(allowed)))})
    return error(404, f"no such endpoint: {req.path}")


class ApiServer:
    """Serves `routes` on a daemon thread; `port=0` picks a free port (see `.port`).

    The connection handling (body limits before auth, per-request deadline, connection cap) is
    the shared kit's (`wabot.httpserver`); this adds routing and the bearer token."""

    def __init__(self, host: str, port: int, routes: Sequence[Route],
                 token: str | None = None, limits: Limits | None = None) -> None:
        self.routes = list(routes)
        self.token = token

        def handle(req: httpserver.Request) -> Response:
            return dispatch(self.routes, self.token, Request(
                method=req.method, path=req.path.rstrip("/") or "/", query=req.query,
                headers=req.headers, body=req.body))

        self._server = HttpServer(host, port, handle, limits=limits or LIMITS,
                                  name="fleet-http", server_version="wabot-fleet",
                                  access_log=log)

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> ApiServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
