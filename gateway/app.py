"""/v1/bots/{namespace}/{bot}/...: authenticate, find the bot, forward to its worker's /v1/....

Stateless on purpose (any number of replicas, any replica for any request): what it keeps is
only a cache of what it read from the API server (API-key hashes, bot tokens). The answer to a
request is decided in this order, so a client learns no more than its key entitles it to:

1. 401 without a valid API key (`Authorization: Bearer <key>`);
2. 422 for a malformed body or Idempotency-Key (naming the field);
3. 404 for a bot the key may not use: one that does not exist, lives in a namespace this
   gateway does not serve (or cannot read), or belongs to another tenant (its spec.serverName
   is not the key's tenant). One status and one body for all of them, so a key cannot tell
   another tenant's bot from a missing one and cannot enumerate other tenants' bot names;
4. 503 when the bot is not connected (status.phase), its pod has no IP or no API token;
5. whatever the worker answers (200, 409, 422, 429 with Retry-After, 502, 503), passed on;
   503 when the worker cannot be reached, 504 when it does not answer in time.

Idempotency is the worker's job (it knows whether it sent): the gateway forwards the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from wabot.api import (
    SendMessageRequest,
    valid_idempotency_key,
)
from wabot.spec import NAME_PATTERN

from .answers import (
    MAX_BODY,
    DocumentedRoutes,
    json_errors,
    not_found,
    ok,
    openapi,
    problem,
    unauthorized,
)
from .config import GatewayConfig
from .kube import BotView

log = logging.getLogger("wabot.gateway")

# A multipart send (POST .../messages with a file): the worker's largest file (a document,
# 32 MiB by default: botworker/core/outgoing.py) and the request's JSON part. The body is read
# whole before it is forwarded, only once the key, the tenant and the bot are checked, and at
# most UPLOADS_AT_ONCE at a time per replica (so a replica holds at most ~130 MiB of them).
MAX_UPLOAD = 32 * 1024 * 1024 + MAX_BODY
# POST .../groups/{group}/photo: the worker takes a JPEG of at most 1 MiB (account_calls.py).
MAX_GROUP_PHOTO = 1024 * 1024
_GROUP_PHOTO = re.compile(r"groups/[^/]+/photo")
UPLOADS_AT_ONCE = 4
_NAME = re.compile(NAME_PATTERN)
# Passed on from the worker's answer, and from the client's request to the worker.
PASSED_HEADERS = ("Content-Type", "Content-Disposition", "Retry-After", "Idempotent-Replayed")
FORWARDED_HEADERS = ("Content-Type", "Idempotency-Key", "Accept")


class Lookup(Protocol):
    def bot(self, namespace: str, name: str) -> BotView | None: ...

    def pod_ip(self, namespace: str, name: str) -> str | None: ...

    def bot_token(self, namespace: str, bot: str) -> str | None: ...

    def api_keys(self, namespace: str) -> dict[str, str]: ...


@dataclass
class _Cached:
    value: Any
    at: float


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("wabot_gateway_requests", "Bot API requests by answer",
                                ["code"], registry=self.registry)
        self.duration = Histogram("wabot_gateway_request_duration_seconds",
                                  "Time to answer a bot API request", registry=self.registry,
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


class Gateway:
    def __init__(self, cfg: GatewayConfig, lookup: Lookup,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.lookup = lookup
        self.metrics = Metrics()
        self._clock = clock
        self._keys: _Cached | None = None
        self._keys_lock = asyncio.Lock()
        self._tokens: dict[tuple[str, str], _Cached] = {}
        self._session: aiohttp.ClientSession | None = None
        self._uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self._documented = DocumentedRoutes.cached()

    # --- API keys --------------------------------------------------------------------------

    async def _key_table(self, refresh: bool = False) -> dict[str, str]:
        async with self._keys_lock:
            now = self._clock()
            stale = self._keys is None or now - self._keys.at > self.cfg.keys_ttl_s
            # An unknown key may be a brand-new one: look again, but not more than every 2 s.
            recheck = refresh and self._keys is not None and now - self._keys.at > 2.0
            if stale or recheck:
                table = await asyncio.to_thread(self.lookup.api_keys, self.cfg.keys_namespace)
                self._keys = _Cached(table, now)
            assert self._keys is not None
            result: dict[str, str] = self._keys.value
            return result

    async def tenant_of(self, request: web.Request) -> str | None:
        scheme, _, key = (request.headers.get("Authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer":
            return None
        return await self.tenant_of_key(key)

    async def tenant_of_key(self, key: str) -> str | None:
        """The tenant an API key belongs to: the send API's check, the console's sign-in."""
        if not key or len(key) > 512:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        tenant = (await self._key_table()).get(digest)
        if tenant is None:
            tenant = (await self._key_table(refresh=True)).get(digest)
        return tenant

    async def key_table(self) -> dict[str, str]:
        """sha256 hex of each key -> its tenant (cached): a console session ends with its key."""
        return await self._key_table()

    # --- bot tokens ------------------------------------------------------------------------

    async def _token(self, namespace: str, bot: str, *, fresh: bool = False) -> str | None:
        key = (namespace, bot)
        cached = self._tokens.get(key)
        if cached is not None and not fresh and self._clock() - cached.at < 300.0:
            value: str | None = cached.value
            return value
        token = await asyncio.to_thread(self.lookup.bot_token, namespace, bot)
        if token:
            self._tokens[key] = _Cached(token, self._clock())
        else:
            self._tokens.pop(key, None)
        return token

    # --- the endpoints ---------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        """POST .../messages: a JSON body is validated here, before any lookup, so a malformed
        request is a 422 whichever bot it names; other bodies (an upload) are the worker's to
        check."""
        return await self._measured(request, self._send)

    async def forward(self, request: web.Request) -> web.Response:
        """Every other /v1/bots/{namespace}/{bot}/... route goes to the worker's /v1/...:
        the same key, tenant and phase checks, the worker's answer passed on. A group's photo
        (a JPEG body) may be up to MAX_GROUP_PHOTO, every other body MAX_BODY."""
        if request.method == "POST" and _GROUP_PHOTO.fullmatch(request.match_info["tail"]):
            return await self._measured(
                request, lambda r: self._proxy(r, max_body=MAX_GROUP_PHOTO))
        return await self._measured(request, self._proxy)

    async def _measured(self, request: web.Request,
                        serve: Callable[[web.Request], Awaitable[web.Response]]) -> web.Response:
        started = time.perf_counter()
        try:
            response = await serve(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("bot API request failed")
            response = problem(500, "internal_error", "the gateway failed; retry later")
        self.metrics.requests.labels(str(response.status)).inc()
        self.metrics.duration.observe(time.perf_counter() - started)
        return response

    async def _send(self, request: web.Request) -> web.Response:
        tenant = await self.tenant_of(request)
        if tenant is None:
            return unauthorized()
        if request.content_type == "multipart/form-data":
            return await self._upload(request, tenant)
        if request.content_type in ("application/json", "application/octet-stream", ""):
            body = await request.read()
            try:
                SendMessageRequest.model_validate_json(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                if first["type"] == "json_invalid" or not loc:
                    loc = "body"
                return problem(422, "invalid_request", f"{loc}: {first['msg']}", field=loc)
        return await self._proxy(request, tenant)

    async def _upload(self, request: web.Request, tenant: str) -> web.Response:
        """A send with its file: the length is checked before a byte is read (413, or 411
        for a body without one), then the usual checks, then the body is read and forwarded;
        503 with Retry-After while this replica is already passing UPLOADS_AT_ONCE on."""
        length = request.content_length
        if length is None:
            return problem(411, "length_required", "an upload needs a Content-Length")
        if length > MAX_UPLOAD:
            return problem(413, "body_too_large", f"an upload has at most {MAX_UPLOAD} bytes")
        if self._uploads.locked():
            return problem(503, "uploads_busy", "too many uploads through this gateway right "
                           "now; retry shortly", headers={"Retry-After": "5"})
        async with self._uploads:
            return await self._proxy(request, tenant, max_body=MAX_UPLOAD)

    async def _proxy(self, request: web.Request, tenant: str | None = None, *,
                     max_body: int = MAX_BODY) -> web.Response:
        allowed = self._documented.methods_for(request.path)
        if allowed is not None and request.method not in allowed:
            # A method the document does not list for a path it does (PUT .../read): 405 from
            # here, before the phase check would make it a 503 for a disconnected bot.
            return problem(405, "method_not_allowed", f"use {', '.join(sorted(allowed))}",
                           headers={"Allow": ", ".join(sorted(allowed))})
        tenant = tenant or await self.tenant_of(request)
        if tenant is None:
            return unauthorized()
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not valid_idempotency_key(idem):
            return problem(422, "invalid_request",
                           "Idempotency-Key: 1 to 255 visible ASCII characters",
                           field="Idempotency-Key")
        namespace = request.match_info["namespace"]
        bot = request.match_info["bot"]
        tail = request.match_info.get("tail", "messages")
        # The session routes serve a bot in any phase: restarting or pairing a bot that is not
        # connected is what they are for.
        session = tail == "session" or tail.startswith("session/")
        target = await self._worker_of(namespace, bot, tenant,
                                       needs_connection=request.method != "GET" and not session)
        if isinstance(target, web.Response):
            return target
        # aiohttp hands the tail over decoded: encoded again, a '?' or '#' in a path segment
        # stays in its segment instead of becoming the worker's query.
        path = (f"/v1/{quote(tail, safe='/@:+')}"
                + (f"?{request.query_string}" if request.query_string else ""))
        return await self._forward(target, namespace, bot, request, path, max_body)

    async def _worker_of(self, namespace: str, bot: str, tenant: str, *,
                         needs_connection: bool) -> str | web.Response:
        """The URL of the bot's worker, or the answer refusing the request (404, 503)."""
        where = f"{namespace}/{bot}"
        served = not self.cfg.namespaces or namespace in self.cfg.namespaces
        view = None
        if served and _NAME.match(namespace) and _NAME.match(bot) and len(bot) <= 63:
            view = await asyncio.to_thread(self.lookup.bot, namespace, bot)
        if view is None or view.tenant != tenant:
            # Another tenant's bot is answered exactly like a missing one (see the docstring).
            return not_found(where)
        if needs_connection and view.phase != "Connected":
            return problem(503, "bot_not_connected",
                           f"bot {where} is not connected to WhatsApp (phase "
                           f"{view.phase or 'unknown'}); retry once it is Connected",
                           phase=view.phase or "Unknown", headers={"Retry-After": "30"})
        pod_ip = await asyncio.to_thread(self.lookup.pod_ip, namespace, view.pod_name)
        if not pod_ip:
            return problem(503, "bot_unreachable", f"bot {where} has no running pod right now",
                           phase=view.phase, headers={"Retry-After": "10"})
        return self.cfg.worker_url(pod_ip=pod_ip, namespace=namespace, bot=bot)

    async def _forward(self, url: str, namespace: str, bot: str, request: web.Request,
                       path: str, max_body: int = MAX_BODY) -> web.Response:
        where = f"{namespace}/{bot}"
        if max_body != MAX_BODY:
            request = request.clone(client_max_size=max_body)
        body = await request.read()
        for attempt in (1, 2):
            token = await self._token(namespace, bot, fresh=attempt == 2)
            if not token:
                return problem(503, "bot_api_unavailable",
                               f"bot {where} has no API token yet (Secret "
                               f"wabot-{bot}-api); retry shortly",
                               headers={"Retry-After": "10"})
            headers = {"Authorization": f"Bearer {token}"}
            headers.update({h: request.headers[h] for h in FORWARDED_HEADERS
                            if h in request.headers})
            try:
                assert self._session is not None
                async with self._session.request(request.method, f"{url.rstrip('/')}{path}",
                                                 data=body, headers=headers) as resp:
                    data = await resp.read()
                    if resp.status == 401 and attempt == 1:
                        continue  # the token changed (a recreated Secret): read it again
                    if resp.status == 401:
                        return problem(503, "bot_api_unavailable",
                                       f"bot {where} refused the gateway's token",
                                       headers={"Retry-After": "10"})
                    passed = {h: resp.headers[h] for h in PASSED_HEADERS if h in resp.headers}
                    return web.Response(status=resp.status, body=data, headers=passed)
            except TimeoutError:
                return problem(504, "bot_timeout",
                               f"bot {where} did not answer in {self.cfg.timeout_s:g} s; with "
                               "an Idempotency-Key a retry cannot send twice")
            except aiohttp.ClientError as exc:
                log.warning("cannot reach the worker of %s: %s", where, type(exc).__name__)
                return problem(503, "bot_unreachable", f"bot {where} cannot be reached "
                               "right now", headers={"Retry-After": "10"})
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the application -------------------------------------------------------------------

    async def _start(self, _app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s, connect=5.0)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def _stop(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        app.router.add_post("/v1/bots/{namespace}/{bot}/messages", self.send)
        # Any other route of the bot's API, with the methods it uses (an undeclared method,
        # like TRACE, stays aiohttp's 405); .../messages has only the POST above.
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            app.router.add_route(method, "/v1/bots/{namespace}/{bot}/{tail:(?!messages$).+}",
                                 self.forward)
        app.router.add_get("/openapi.yaml", openapi)
        app.router.add_get("/livez", ok)
        app.router.add_get("/readyz", ok)
        app.router.add_get("/metrics", self._metrics)
        # The web console (/console/), when WABOT_GATEWAY_CONSOLE=true (gateway/console).
        from .console import install

        install(app, self, self.cfg.namespaces)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _metrics(self, _request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(self.metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp
