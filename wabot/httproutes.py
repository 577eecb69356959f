"""Routing for the servers built on the HTTP kit (`wabot.httpserver`): a table of routes, the
bearer-token check for the routes that need one, 404/405 for the rest, and each route's own
body limit.

Shared by the worker's API (`botworker/runtime/health_server.py`) and the fleet tiers'
(`fleet/http.py`), so a route is declared the same way everywhere and a token is compared one
way only: in constant time, so it cannot be guessed byte by byte from response times.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from .httpserver import Limits, Request, Response

Handler = Callable[[Request], Response]
# (status, code, message, headers) -> the server's own error shape.
Refuse = Callable[[int, str, str, Mapping[str, str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # a regular expression over the whole path, e.g. r"/bots/(?P<name>[^/]+)"
    handler: Handler
    auth: bool = False
    # The largest body this route takes; None: the server's default (`Limits.max_body`).
    max_body: int | None = None
    # The handler takes the body over: it arrives as a bytearray the handler may empty once
    # it has what it needs (an upload's file: not held twice while it is sent).
    takes_body: bool = False

    def match(self, path: str) -> dict[str, str] | None:
        m = re.fullmatch(self.pattern, path)
        return m.groupdict() if m else None


def token_ok(presented: str | None, token: str) -> bool:
    scheme, _, value = (presented or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def dispatch(routes: Sequence[Route], token: str | None, req: Request, refuse: Refuse,
             *, disabled: str = "this API is disabled") -> Response:
    """The first route matching path and method; 401 for a route needing the token without it,
    403 when no token is configured at all (`disabled` says which setting turns it on)."""
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
                return refuse(403, "disabled", disabled, {})
            if not token_ok(req.headers.get("authorization"), token):
                return refuse(401, "unauthorized", "missing or wrong bearer token",
                              {"WWW-Authenticate": 'Bearer realm="wabot"'})
        return route.handler(replace(req, params=params))
    if allowed:
        methods = ", ".join(sorted(set(allowed)))
        return refuse(405, "method_not_allowed", f"use {methods}", {"Allow": methods})
    return refuse(404, "not_found", f"no such endpoint: {req.path}", {})


def body_limit(routes: Sequence[Route], default: int,
               token: str | None = None) -> Callable[[str, str, str | None], int]:
    """For the kit: the body limit of the route a request line names, known before its body is
    read, so only the routes that take uploads take large bodies, and only from a client that
    presented the token when the route needs one: anyone else is refused above `default` before
    a byte is read, so a stranger cannot make the server hold a large body per connection."""

    def limit(method: str, path: str, authorization: str | None) -> int:
        for route in routes:
            if (route.method == method and route.max_body is not None
                    and route.match(path) is not None):  # {}: a match without parameters
                if route.auth and (token is None or not token_ok(authorization, token)):
                    return default
                return route.max_body
        return default

    return limit


def limits_for(routes: Sequence[Route], limits: Limits, token: str | None = None) -> Limits:
    def takes_body(method: str, path: str) -> bool:
        return any(route.takes_body and route.method == method and route.match(path) is not None
                   for route in routes)

    return Limits(max_body=limits.max_body, timeout_s=limits.timeout_s,
                  max_connections=limits.max_connections,
                  body_limit=body_limit(routes, limits.max_body, token),
                  takes_body=takes_body if any(r.takes_body for r in routes) else None)
