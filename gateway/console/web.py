"""The console's HTTP side, mounted on the gateway's aiohttp application under /console/.

Every page is the same static shell (static/console.html) that loads console.js and
console.css from this origin; the script asks /console/api/... for data and opens one
server-sent-events stream. No inline script or style anywhere, so the Content-Security-Policy
allows scripts, styles and images from this origin only and nothing else at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from wabot.console import page
from wabot.console.page import SECURITY_HEADERS, Failures
from wabot.console.qr import qr_svg
from wabot.console.session import COOKIE, CSRF_HEADER, Signer, Viewer
from wabot.spec import NAME_PATTERN

from .access import ACTION_VERBS, SESSION_ACTIONS, Access
from .actions import ActionError, Actions
from .fleet import Fleet

log = logging.getLogger("wabot.gateway.console")
_NAME = re.compile(NAME_PATTERN)
MAX_LOGIN = 8192


class Tenants(Protocol):
    """The send API's key check (gateway/app.py), shared so both accept the same keys."""

    async def tenant_of_key(self, key: str) -> str | None: ...

    async def key_table(self) -> dict[str, str]: ...


def json_answer(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def refuse(status: int, message: str) -> web.Response:
    return json_answer(status, {"error": message})


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Added to every /console answer, errors and streams included."""
    if not request.path.startswith("/console"):
        return
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")


def same_origin(request: web.Request) -> bool:
    """A state-changing request must come from a page of this origin (the sign-in too, which
    has no session yet for SameSite to protect)."""
    return page.same_origin(request.headers.get("Origin") or request.headers.get("Referer"),
                            request.host)


def _loopback(request: web.Request) -> bool:
    return page.loopback(request.host)


def _https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto") == "https"


class ConsoleWeb:
    def __init__(self, signer: Signer, tenants: Tenants, access: Access, fleet: Fleet,
                 actions: Actions) -> None:
        self.signer = signer
        self.tenants = tenants
        self.access = access
        self.fleet = fleet
        self.actions = actions
        self.failures = Failures()

    # --- who is asking -----------------------------------------------------------------------

    async def viewer(self, request: web.Request) -> Viewer | None:
        viewer = self.signer.check(request.cookies.get(COOKIE))
        if viewer is None:
            return None
        if viewer.kind == "tenant":
            # A deleted or rotated key ends its sessions at once.
            table = await self.tenants.key_table()
            if not any(d.startswith(viewer.key_hash) and t == viewer.name
                       for d, t in table.items()):
                return None
        return viewer

    def _set_cookie(self, request: web.Request, response: web.Response, value: str,
                    max_age: int) -> None:
        response.set_cookie(COOKIE, value, max_age=max_age, path="/console", httponly=True,
                            samesite="Strict", secure=not _loopback(request))

    # --- sign-in -----------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return refuse(403, "sign in from the console's own page")
        if not _loopback(request) and not _https(request):
            # The cookie would be Secure, and a browser drops it over plain HTTP: say so.
            return refuse(400, "sign in over HTTPS (an Ingress with TLS), or on this machine "
                          "through kubectl port-forward (http://localhost)")
        remote = request.remote or ""
        if self.failures.blocked(remote):
            return refuse(429, "too many failed sign-ins from here; wait a minute")
        try:
            body = json.loads(await request.content.read(MAX_LOGIN + 1))
            kind, credential = str(body["kind"]), str(body["credential"]).strip()
        except (ValueError, KeyError, TypeError):
            return refuse(422, "send {kind: key|token, credential}")
        if not credential or len(credential) > MAX_LOGIN:
            return refuse(422, "the credential is empty or too long")
        viewer: Viewer | None = None
        if kind == "key":
            tenant = await self.tenants.tenant_of_key(credential)
            if tenant is not None:
                digest = hashlib.sha256(credential.encode()).hexdigest()[:32]
                viewer = Viewer(kind="tenant", name=tenant, key_hash=digest)
        elif kind == "token":
            viewer = await self.access.review_token(credential)
        else:
            return refuse(422, "kind: key (a tenant's API key) or token (a Kubernetes token)")
        if viewer is None:
            self.failures.add(remote)
            return refuse(401, "that API key or token is not valid here")
        cookie, signed = self.signer.issue(viewer)
        log.info("console sign-in: %s", signed.describe())
        response = json_answer(200, self._me(signed))
        self._set_cookie(request, response, cookie, int(self.signer.lifetime_s))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        if viewer is not None and not self.signer.csrf_ok(viewer,
                                                          request.headers.get(CSRF_HEADER)):
            return refuse(403, "missing or wrong CSRF token")
        response = json_answer(200, {"signedOut": True})
        self._set_cookie(request, response, "", 0)
        return response

    def _me(self, viewer: Viewer) -> dict[str, Any]:
        return {"kind": viewer.kind, "name": viewer.name, "csrf": self.signer.csrf(viewer),
                "expires": viewer.expires}

    async def me(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return refuse(401, "not signed in")
        return json_answer(200, self._me(viewer))

    # --- pages -------------------------------------------------------------------------------

    async def shell(self, _request: web.Request) -> web.Response:
        return web.Response(body=page.asset("console.html"), content_type="text/html",
                            charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in page.STATIC or name == "poll.js":
            raise web.HTTPNotFound()
        return web.Response(body=page.asset(name), content_type=page.STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    # --- one bot -----------------------------------------------------------------------------

    async def _bot(self, request: web.Request) -> tuple[Viewer, dict[str, Any]] | web.Response:
        """The viewer and the bot's object, or the answer refusing: 401 without a session, one
        404 for a bot that is missing or that this viewer may not see."""
        viewer = await self.viewer(request)
        if viewer is None:
            return refuse(401, "not signed in")
        ns, name = request.match_info["namespace"], request.match_info["bot"]
        obj = self.fleet.get(ns, name) if _NAME.match(ns) and _NAME.match(name) else None
        tenant = ((obj or {}).get("spec") or {}).get("serverName", "")
        if obj is None or not await self.access.may_see_bot(viewer, ns, name, tenant):
            return refuse(404, f"there is no bot {ns}/{name}")
        return viewer, obj

    async def bot(self, request: web.Request) -> web.Response:
        found = await self._bot(request)
        if isinstance(found, web.Response):
            return found
        viewer, obj = found
        ns, name = request.match_info["namespace"], request.match_info["bot"]
        tenant = obj["spec"].get("serverName", "")
        out = dict(self.fleet.details.get((ns, name)) or {})
        out["actions"] = [a for a in ACTION_VERBS
                          if await self.access.may_act(viewer, a, ns, name, tenant)]
        out["events"], out["eventsError"] = None, None
        if await self.access.may_read_events(viewer, ns, tenant):
            try:
                out["events"] = await self.actions.events(ns, name)
            except ActionError as exc:
                out["eventsError"] = str(exc)
        else:
            out["eventsError"] = "you may not read the Events of this namespace"
        return json_answer(200, out)

    async def qr(self, request: web.Request) -> web.Response:
        found = await self._bot(request)
        if isinstance(found, web.Response):
            return found
        pairing = ((found[1].get("status") or {}).get("worker") or {}).get("pairing") or {}
        payload = pairing.get("qr")
        if not payload:
            return refuse(404, "no QR code right now")
        return web.Response(body=qr_svg(payload), content_type="image/svg+xml")

    async def act(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            return refuse(403, "actions come from the console's own page")
        found = await self._bot(request)
        if isinstance(found, web.Response):
            return found
        viewer, obj = found
        if not self.signer.csrf_ok(viewer, request.headers.get(CSRF_HEADER)):
            return refuse(403, "missing or wrong CSRF token")
        ns, name = request.match_info["namespace"], request.match_info["bot"]
        action = request.match_info["action"]
        tenant = obj["spec"].get("serverName", "")
        if not await self.access.may_act(viewer, action, ns, name, tenant):
            log.info("console: %s may not %s %s/%s", viewer.describe(), action, ns, name)
            return refuse(403, f"you may not {action} {ns}/{name}")
        request_id = None
        try:
            if action in ("suspend", "resume"):
                await self.actions.set_suspend(viewer, ns, name, action == "suspend")
            elif action in SESSION_ACTIONS:
                request_id = await self.actions.session_action(viewer, obj, action)
            else:
                return refuse(404, f"no action {action}")
        except ActionError as exc:
            return refuse(502, str(exc))
        log.info("console: %s did %s on %s/%s", viewer.describe(), action, ns, name)
        return json_answer(200, {"done": action, "requestId": request_id})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
