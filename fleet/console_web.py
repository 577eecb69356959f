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

from wabot.console import page, views
from wabot.console.qr import qr_svg
from wabot.console.session import COOKIE, CSRF_HEADER, Signer, Viewer
from wabot.spec import NAME_PATTERN

from .console import SessionPoller, WorkerCallError, bot_object, call_worker
from .endpoint import BotView
from .http import Request, Response, Route
from .policy import State

log = logging.getLogger("wabot.fleet.console")

SESSION_HOURS = 8
MAX_LOGIN = 8192
ACTIONS = ("suspend", "resume", "restart", "pairing", "logout")
_NAME = NAME_PATTERN.strip("^$")
BOT = rf"/console/api/bots/(?P<namespace>{_NAME})/(?P<bot>{_NAME})"
EVENTS_NOTE = ("Kubernetes Events exist only under the operator; this bot's history is in the "
               "server's log.")


class Bots(Protocol):
    """What the console needs of the process serving it (the monolith)."""

    def views(self, name: str | None = None) -> list[BotView]: ...

    def pairing_method(self, name: str) -> str: ...

    def worker_token(self, name: str) -> str | None: ...

    def set_running(self, name: str, running: bool) -> bool: ...

    def restart_process(self, name: str) -> bool: ...


def _answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json",
                    {**page.SECURITY_HEADERS, **(headers or {})})


def _refuse(status: int, message: str) -> Response:
    return _answer(status, {"error": message})


class FleetConsole:
    def __init__(self, bots: Bots, token: str | None, namespace: str,
                 poller: SessionPoller) -> None:
        self.bots = bots
        self.token = token
        self.namespace = namespace
        self.poller = poller
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
        remote = req.headers.get("x-forwarded-for", "local")
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

    def _objects(self, name: str | None = None) -> list[dict[str, Any]]:
        self.poller.wanted()
        return [bot_object(self.namespace, v, self.poller.latest(v.name),
                           self.bots.pairing_method(v.name)) for v in self.bots.views(name)]

    def _found(self, req: Request) -> tuple[Viewer, dict[str, Any]] | Response:
        viewer = self.viewer(req)
        if viewer is None:
            return _refuse(401, "not signed in")
        ns, name = req.params["namespace"], req.params["bot"]
        found = self._objects(name) if ns == self.namespace else []
        if not found:
            return _refuse(404, f"there is no bot {ns}/{name}")
        return viewer, found[0]

    def list(self, req: Request) -> Response:
        if self.viewer(req) is None:
            return _refuse(401, "not signed in")
        return _answer(200, {"items": [views.row(o) for o in self._objects()]})

    def stream(self, req: Request) -> Response:
        """One poll of poll.js: the events a stream would have sent, each a full snapshot."""
        if self.viewer(req) is None:
            return _refuse(401, "not signed in")
        only = req.query.get("bot", [""])[0]
        if not only:
            rows = [views.row(o) for o in self._objects()]
            return _answer(200, {"events": [{"event": "rows",
                                             "data": {"snapshot": True, "items": rows}}]})
        ns, _, name = only.partition("/")
        found = self._objects(name) if ns == self.namespace and name else []
        items = ([views.detail(found[0])] if found
                 else [{"namespace": ns, "name": name, "gone": True}])
        return _answer(200, {"events": [{"event": "bot",
                                         "data": {"snapshot": True, "items": items}}]})

    def bot(self, req: Request) -> Response:
        found = self._found(req)
        if isinstance(found, Response):
            return found
        return _answer(200, {**views.detail(found[1]), "actions": list(ACTIONS),
                             "events": None, "eventsError": EVENTS_NOTE})

    def qr(self, req: Request) -> Response:
        found = self._found(req)
        if isinstance(found, Response):
            return found
        payload = (found[1]["status"]["worker"].get("pairing") or {}).get("qr")
        if not payload:
            return _refuse(404, "no QR code right now")
        return Response(200, qr_svg(payload), "image/svg+xml")

    def act(self, req: Request) -> Response:
        if not self._same_origin(req):
            return _refuse(403, "actions come from the console's own page")
        found = self._found(req)
        if isinstance(found, Response):
            return found
        viewer, obj = found
        assert self.signer is not None
        if not self.signer.csrf_ok(viewer, req.headers.get(CSRF_HEADER.lower())):
            return _refuse(403, "missing or wrong CSRF token")
        name, action = req.params["bot"], req.params["action"]
        if action not in ACTIONS:
            return _refuse(404, f"no action {action}")
        done = self._carry_out(name, action, obj)
        if isinstance(done, Response):
            return done
        log.info("console: %s did %s", viewer.describe(), action, extra={"bot_name": name})
        return _answer(200, {"done": action, "requestId": done})

    def _carry_out(self, name: str, action: str, obj: dict[str, Any]) -> str | Response | None:
        """The action on the supervisor (suspend, resume; restart of a process that is not
        running) or on the worker's session API; the worker's request id, if any."""
        if action in ("suspend", "resume"):
            self.bots.set_running(name, action == "resume")
            return None
        view = self.bots.views(name)[0]
        token = self.bots.worker_token(name)
        if view.state is not State.RUNNING or view.port is None or token is None:
            if action == "restart" and self.bots.restart_process(name):
                return None
            return _refuse(409, "the bot's worker is not running: resume or restart it first")
        body: dict[str, Any] | None = None
        if action == "pairing" and obj["spec"]["pairing"]["method"] == "code":
            action = "restart"  # a new code comes from a new session in the bot's own mode
        elif action == "pairing":
            body = {"method": "qr"}
        try:
            status, answer = call_worker(view.port, token, "POST", f"/v1/session/{action}",
                                         body, timeout=10.0)
        except WorkerCallError as exc:
            return _refuse(502, str(exc))
        if status >= 400:
            return _refuse(502 if status >= 500 else 409,
                           str(answer.get("message") or answer.get("error") or status))
        return str(answer.get("requestId") or "") or None
