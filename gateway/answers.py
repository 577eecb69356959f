"""The gateway's own answers: every error in the API's one shape (`wabot.api.ErrorResponse`),
aiohttp's own refusals turned into it, and the OpenAPI document with the routes and methods it
documents (a method it does not list for a documented path is a 405 naming those it does)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from wabot.api import ErrorResponse

MAX_BODY = 64 * 1024


def unauthorized() -> web.Response:
    return problem(401, "unauthorized", "a valid API key is required "
                   "(Authorization: Bearer <key>)",
                   headers={"WWW-Authenticate": 'Bearer realm="wabot"'})


def not_found(where: str) -> web.Response:
    """The one answer for a bot this key may not use, whatever the reason: it names only
    what the client sent, so it is the same for a missing bot and another tenant's."""
    return problem(404, "bot_not_found", f"there is no bot {where}")


def problem(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> web.Response:
    body = ErrorResponse(error=code, message=message, **extra)
    return web.Response(status=status, body=body.model_dump_json(by_alias=True,
                                                                 exclude_none=True),
                        content_type="application/json", headers=headers)


class DocumentedRoutes:
    """The bot routes gateway/openapi.yaml documents, with their methods: every other route
    is forwarded as it comes, these answer 405 for a method the document does not list."""

    def __init__(self, routes: list[tuple[re.Pattern[str], frozenset[str]]]) -> None:
        self._routes = routes

    @classmethod
    def load(cls) -> DocumentedRoutes:
        import yaml

        doc = yaml.safe_load(openapi_document())
        routes = []
        for path, ops in (doc.get("paths") or {}).items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
            methods = frozenset(m.upper() for m in ops
                                if m in ("get", "post", "put", "patch", "delete"))
            routes.append((re.compile(regex), methods))
        return cls(routes)

    @classmethod
    @functools.cache
    def cached(cls) -> DocumentedRoutes:
        return cls.load()

    def methods_for(self, path: str) -> frozenset[str] | None:
        for regex, methods in self._routes:
            if regex.fullmatch(path):
                return methods
        return None


def openapi_document() -> bytes:
    return resources.files("gateway").joinpath("openapi.yaml").read_bytes()


async def openapi(_request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/yaml")


async def ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers (404 route, 405 method, 413 too large) as the API's JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed",
                413: "body_too_large"}.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else f"at most {MAX_BODY} bytes"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        documented = DocumentedRoutes.cached().methods_for(request.path)
        if exc.status == 405 and documented is not None:
            # OPTIONS, TRACE, ...: the methods the document lists, not every method the
            # catch-all forwarder takes for the routes it does not know.
            headers = {"Allow": ", ".join(sorted(documented))}
        return problem(exc.status, code, message, headers=headers)
