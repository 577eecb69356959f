"""The web console on the monolith's endpoint (issue 27), the same pages as the gateway's:
sign in with the control token (WABOT_CONTROLLER_TOKEN), the fleet at a glance, a bot's page
with its live QR code or pairing code, and the actions.

The pages, scripts and plain-word views are the gateway's (wabot.console); what differs is the
transport: this standard-library server does not stream, so the shell adds poll.js, which asks
GET /console/api/stream every 2 s for what a stream would have sent. The session cookie is
signed with a key derived from the control token (a changed token signs everybody out), is
HttpOnly and SameSite=Strict; every action needs the page's CSRF token and its own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol

from wabot.console import page
from wabot.console.session import COOKIE, CSRF_HEADER, Signer, Viewer
from wabot.httproutes import token_ok
from wabot.spec import NAME_PATTERN

from .console import ACTIONS
from .http import Request, Response, Route

log = logging.getLogger("wabot.fleet.console")

SESSION_HOURS = 8
MAX_LOGIN = 8192
_NAME = NAME_PATTERN.strip("^$")
BOT = rf"/console/api/bots/(?P<namespace>{_NAME})/(?P<bot>{_NAME})"


class ConsoleBots(Protocol):
    """Where the console's data and actions come from: the monolith's own workers
    (fleet.console.LocalBots) or the controller's groups (fleet.console_proxy.GroupBots)."""

    def rows(self) -> list[dict[str, Any]]: ...

    def detail(self, namespace: str, name: str) -> dict[str, Any] | None:
        """views.detail plus the page's `actions`, `events` and `eventsError`; None: no bot."""

    def qr(self, namespace: str, name: str) -> bytes | None: ...

    def act(self, namespace: str, name: str, action: str) -> tuple[int, dict[str, Any]]:
        """(200, {done, requestId}) or (status, {error})."""


def _answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json",
                    {**page.SECURITY_HEADERS, **(headers or {})})


def _refuse(status: int, message: str) -> Response:
    return _answer(status, {"error": message})


class FleetConsole:
    def __init__(self, bots: ConsoleBots, token: str | None) -> None:
        self.bots = bots
        self.token = token
        self.failures = page.Failures()
        self.signer = Signer(hmac.new(token.encode(), b"wabot-fleet-console",
                                      hashlib.sha256).hexdigest(), SESSION_HOURS * 3600
                             ) if token else None

    def routes(self) -> list[Route]:
        def guard(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
            def handle(req: Request) -> Response:
                resp = fn(req)
                return Response(resp.status, resp.body, resp.content_type,
                                {**page.SECURITY_HEADERS, **resp.headers})
            return handle

        table = [
            ("GET", r"/console", self.shell),
            ("GET", rf"/console/bots/{_NAME}/{_NAME}", self.shell),
            ("GET", r"/console/static/(?P<file>[a-z]+\.[a-z]+)", self.static),
            ("POST", r"/console/api/login", self.login),
            ("POST", r"/console/api/logout", self.logout),
            ("GET", r"/console/api/me", self.me),
            ("GET", r"/console/api/stream", self.stream),
            ("GET", r"/console/api/bots", self.list),
            ("GET", BOT, self.bot),
            ("GET", BOT + r"/qr\.svg", self.qr),
            ("POST", BOT + r"/actions/(?P<action>[a-z]+)", self.act),
        ]
        return [Route(method, pattern, guard(fn)) for method, pattern, fn in table]

    # --- who is asking -----------------------------------------------------------------------

    def viewer(self, req: Request) -> Viewer | None:
        if self.signer is None:
            return None
        try:
            jar = SimpleCookie(req.headers.get("cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return self.signer.check(morsel.value if morsel else None)

    def _cookie(self, req: Request, value: str, max_age: int) -> dict[str, str]:
        secure = "" if page.loopback(req.headers.get("host", "")) else "; Secure"
        return {"Set-Cookie": f"{COOKIE}={value}; Max-Age={max_age}; Path=/console; "
                              f"HttpOnly; SameSite=Strict{secure}"}

    def _same_origin(self, req: Request) -> bool:
        return page.same_origin(req.headers.get("origin") or req.headers.get("referer"),
                                req.headers.get("host", ""))

    def _me(self, viewer: Viewer) -> dict[str, Any]:
        assert self.signer is not None
        return {"kind": viewer.kind, "name": viewer.name, "csrf": self.signer.csrf(viewer),
                "expires": viewer.expires}

    # --- sign-in -----------------------------------------------------------------------------

    def login(self, req: Request) -> Response:
        if not self._same_origin(req):
            return _refuse(403, "sign in from the console's own page")
        if self.signer is None or self.token is None:
            return _refuse(403, "the console is off: set WABOT_CONTROLLER_TOKEN")
        if (not page.loopback(req.headers.get("host", ""))
                and req.headers.get("x-forwarded-proto") != "https"):
            # The cookie would be Secure, and a browser drops it over plain HTTP: say so.
            return _refuse(400, "sign in over HTTPS (a proxy with TLS), or on this machine "
                                "(http://127.0.0.1 or an SSH tunnel to it)")
        # One count for every client: this server does not see the client's address, and a
        # header naming one could be forged to dodge the limit.
        remote = "any"
        if self.failures.blocked(remote):
            return _refuse(429, "too many failed sign-ins from here; wait a minute")
        try:
            credential = str(json.loads(req.body[:MAX_LOGIN + 1])["credential"]).strip()
        except (ValueError, KeyError, TypeError):
            return _refuse(422, "send {kind: token, credential}")
        if not hmac.compare_digest(credential.encode(), self.token.encode()):
            self.failures.add(remote)
            return _refuse(401, "that token is not valid here")
        cookie, viewer = self.signer.issue(Viewer(kind="user", name="admin"))
        log.info("console sign-in with the control token")
        return _answer(200, self._me(viewer), self._cookie(req, cookie,
                                                           int(self.signer.lifetime_s)))

    def logout(self, req: Request) -> Response:
        viewer = self.viewer(req)
        if viewer is not None and self.signer is not None and not self.signer.csrf_ok(
                viewer, req.headers.get(CSRF_HEADER.lower())):
            return _refuse(403, "missing or wrong CSRF token")
        return _answer(200, {"signedOut": True}, self._cookie(req, "", 0))

    def me(self, req: Request) -> Response:
        viewer = self.viewer(req)
        return _refuse(401, "not signed in") if viewer is None else _answer(200, self._me(viewer))

    # --- pages -------------------------------------------------------------------------------

    def shell(self, _req: Request) -> Response:
        html = page.asset("console.html").replace(
            b'<script src="/console/static/bot.js"',
            b'<script src="/console/static/poll.js" defer></script>\n'
            b'<script src="/console/static/bot.js"', 1)
        return Response(200, html, "text/html; charset=utf-8")

    def static(self, req: Request) -> Response:
        name = req.params["file"]
        if name not in page.STATIC:
            return _refuse(404, f"no such file: {name}")
        return Response(200, page.asset(name), page.STATIC[name])

    # --- the bots ----------------------------------------------------------------------------

    def _signed_in(self, req: Request) -> Viewer | None:
        """A page's session, or a caller with the control token (the controller asking its
        groups: no cookie, so no CSRF to guard against)."""
        if self.token is not None and token_ok(req.headers.get("authorization"), self.token):
            return Viewer(kind="user", name="controller")
        return self.viewer(req)

    def list(self, req: Request) -> Response:
        if self._signed_in(req) is None:
            return _refuse(401, "not signed in")
        return _answer(200, {"items": self.bots.rows()})

    def stream(self, req: Request) -> Response:
        """One poll of poll.js: the events a stream would have sent, each a full snapshot."""
        if self._signed_in(req) is None:
            return _refuse(401, "not signed in")
        only = req.query.get("bot", [""])[0]
        if not only:
            return _answer(200, {"events": [{"event": "rows", "data": {
                "snapshot": True, "items": self.bots.rows()}}]})
        ns, _, name = only.partition("/")
        found = self.bots.detail(ns, name)
        items = [found] if found else [{"namespace": ns, "name": name, "gone": True}]
        return _answer(200, {"events": [{"event": "bot",
                                         "data": {"snapshot": True, "items": items}}]})

    def bot(self, req: Request) -> Response:
        if self._signed_in(req) is None:
            return _refuse(401, "not signed in")
        ns, name = req.params["namespace"], req.params["bot"]
        found = self.bots.detail(ns, name)
        return _answer(200, found) if found else _refuse(404, f"there is no bot {ns}/{name}")

    def qr(self, req: Request) -> Response:
        if self._signed_in(req) is None:
            return _refuse(401, "not signed in")
        svg = self.bots.qr(req.params["namespace"], req.params["bot"])
        return Response(200, svg, "image/svg+xml") if svg else _refuse(
            404, "no QR code right now")

    def act(self, req: Request) -> Response:
        bearer = self.token is not None and token_ok(req.headers.get("authorization"),
                                                      self.token)
        if not bearer and not self._same_origin(req):
            return _refuse(403, "actions come from the console's own page")
        viewer = self._signed_in(req)
        if viewer is None:
            return _refuse(401, "not signed in")
        assert self.signer is not None
        if not bearer and not self.signer.csrf_ok(viewer, req.headers.get(CSRF_HEADER.lower())):
            return _refuse(403, "missing or wrong CSRF token")
        ns, name, action = req.params["namespace"], req.params["bot"], req.params["action"]
        if action not in ACTIONS:
            return _refuse(404, f"no action {action}")
        status, answer = self.bots.act(ns, name, action)
        if status == 200:
            log.info("console: %s did %s", viewer.describe(), action, extra={"bot_name": name})
        return _answer(status, answer)
