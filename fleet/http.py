"""A small HTTP API on the standard library's threading server, shared by the monolith, the
worker groups and the controller.

The standard library and not aiohttp: the monolith ships in the worker image, which has no
aiohttp, and a handful of JSON endpoints polled by humans and Prometheus do not need an event
loop. Routes that change or reveal the fleet can require a bearer token, compared in constant
time so the token cannot be guessed byte by byte from response times.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel

log = logging.getLogger("wabot.fleet.http")

MAX_BODY = 64 * 1024
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


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
    """Serves `routes` on a daemon thread; `port=0` picks a free port (see `.port`)."""

    def __init__(self, host: str, port: int, routes: Sequence[Route],
                 token: str | None = None) -> None:
        self.routes = list(routes)
        self.token = token
        server_self = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "wabot-fleet"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(error(413, "request body too large"))
                    return
                body = self.rfile.read(length) if length else b""
                req = Request(
                    method=self.command, path=parts.path.rstrip("/") or "/",
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                )
                try:
                    resp = dispatch(server_self.routes, server_self.token, req)
                except Exception:
                    log.exception("request failed", extra={"path": req.path})
                    resp = error(500, "internal error")
                self._send(resp)

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle
            do_DELETE = _handle

            def _send(self, resp: Response) -> None:
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
                self.send_header("Cache-Control", "no-store")
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(resp.body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s", format % args)

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fleet-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
