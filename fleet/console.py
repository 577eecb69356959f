"""The console's view of a fleet without Kubernetes (issue 27): each bot's WhatsApp session as
its worker reports it (GET /v1/session), beside its process as the supervisor sees it.

The monolith gives each worker it starts an API token of its own (random, held in this process
only, never shown), and ONE thread asks every running worker for its session at most once per
interval, and only while a page is open: a page polls the monolith, never the workers, so a
hundred open pages cost the workers nothing more than one.

What a page gets is built by the same plain-word views as the gateway's (wabot.console.views),
from an object shaped like the WhatsAppBot status the operator would have written.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from wabot.console import views
from wabot.console.qr import qr_svg
from wabot.status import WORKER_PHASES, WorkerState

from .endpoint import BotView
from .policy import State

log = logging.getLogger("wabot.fleet.console")

INTERVAL_S = 2.0
TIMEOUT_S = 2.0
# Polling stops this long after the last page asked (no page open: no load on the workers).
IDLE_S = 30.0
# The session fields a page may show (never the worker's token or anything else it sends).
SESSION_FIELDS = ("state", "account", "pairing", "lastError", "sessionAction", "activity")
ACTIONS = ("suspend", "resume", "restart", "pairing", "logout")
EVENTS_NOTE = ("Kubernetes Events exist only under the operator; this bot's history is in the "
               "server's log.")


class WorkerCallError(Exception):
    """The worker did not answer, or refused (the message says which)."""


def fetch(url: str, token: str, method: str = "GET", body: dict[str, Any] | None = None,
          timeout: float = TIMEOUT_S) -> tuple[int, bytes]:
    """One request with a bearer token to a process of ours on loopback (a worker, or for the
    controller a group); a POST gets its own Idempotency-Key."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if method == "POST":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WorkerCallError(f"no answer from {urllib.parse.urlsplit(url).netloc}: "
                              f"{exc}") from None


def fetch_json(url: str, token: str, method: str = "GET", body: dict[str, Any] | None = None,
               timeout: float = TIMEOUT_S) -> tuple[int, dict[str, Any]]:
    """`fetch`, its answer read as a JSON object ({} when it is not one)."""
    status, raw = fetch(url, token, method, body, timeout)
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = {}
    return status, answer if isinstance(answer, dict) else {}


def call_worker(port: int, token: str, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = TIMEOUT_S) -> tuple[int, dict[str, Any]]:
    """One request to a worker's API on its loopback port, with its token."""
    return fetch_json(f"http://127.0.0.1:{port}{path}", token, method, body, timeout)


def answer_of(status: int, answer: dict[str, Any], action: str) -> tuple[int, dict[str, Any]]:
    """A worker's (or group's) answer to an action, as the console's page reads it."""
    if status >= 400:
        return (502 if status >= 500 else 409), {
            "error": str(answer.get("message") or answer.get("error") or status)}
    return 200, {"done": action, "requestId": answer.get("requestId")}


class SessionPoller:
    """The latest session each running worker reported; `views` lists the bots with their
    ports, `token_of` names each bot's worker token."""

    def __init__(self, views: Callable[[], Sequence[BotView]],
                 token_of: Callable[[str], str | None], interval_s: float = INTERVAL_S) -> None:
        self._views = views
        self._token_of = token_of
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._sessions: dict[str, dict[str, Any]] = {}
        self._wanted_until = 0.0
        self._wake = threading.Event()

    def latest(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._sessions.get(name)

    def wanted(self) -> None:
        """A page asked: keep polling for a while (and start now if idle)."""
        idle = time.monotonic() > self._wanted_until
        self._wanted_until = time.monotonic() + IDLE_S
        if idle:
            self._wake.set()

    def poll_once(self) -> None:
        targets = [(v.name, v.pid, v.port, self._token_of(v.name)) for v in self._views()
                   if v.state is State.RUNNING and v.port is not None]
        asked = [t for t in targets if t[3]]

        def ask(target: tuple[str, int | None, int | None, str | None]) -> dict[str, Any] | None:
            _name, _pid, port, token = target
            assert port is not None and token is not None
            try:
                status, body = call_worker(port, token, "GET", "/v1/session")
            except WorkerCallError:
                return None
            if status != 200:
                return None
            return {k: body[k] for k in SESSION_FIELDS if k in body}

        results: list[dict[str, Any] | None] = []
        if asked:
            with ThreadPoolExecutor(max_workers=min(16, len(asked))) as pool:
                results = list(pool.map(ask, asked))
        fresh = {name: {**session, "pid": pid} for (name, pid, _p, _t), session
                 in zip(asked, results, strict=True) if session is not None}
        with self._lock:
            # A worker that did not answer keeps its last report for the same process only;
            # a stopped or restarted one has no session to show.
            running = {name: pid for name, pid, _p, _t in targets}
            kept = {n: s for n, s in self._sessions.items()
                    if n not in fresh and running.get(n) == s.get("pid")}
            self._sessions = {**kept, **fresh}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if time.monotonic() <= self._wanted_until:
                try:
                    self.poll_once()
                except Exception:  # a poller bug must not end the console
                    log.exception("session poll failed")
                stop.wait(self.interval_s)
            else:
                self._wake.wait(1.0)
                self._wake.clear()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="fleet-sessions",
                                  daemon=True)
        thread.start()
        return thread


def _ready(view: BotView) -> dict[str, Any]:
    if view.ready:
        return {"type": "Ready", "status": "True", "reason": "Connected",
                "message": "the worker is connected to WhatsApp"}
    if view.state is State.RUNNING:
        return {"type": "Ready", "status": "False", "reason": "NotConnected",
                "message": "its process is running and not connected to WhatsApp yet"}
    why = {State.BACKOFF: f"its process exited (code {view.last_exit_code}) and restarts "
                          "after a backoff",
           State.STOPPED: "its process is stopped",
           State.STOPPING: "its process is stopping"}.get(view.state, "its process is starting")
    return {"type": "Ready", "status": "False", "reason": str(view.state), "message": why}


def _phase(view: BotView, session: dict[str, Any] | None) -> str:
    if view.suspended or not view.desired:
        return "Suspended"
    if view.state is State.RUNNING and session and session.get("state"):
        try:
            return str(WORKER_PHASES[WorkerState(session["state"])])
        except ValueError:
            return "Connecting"
    if view.state is State.BACKOFF:
        return "Disconnected"
    return "Pending"


def bot_object(namespace: str, view: BotView, session: dict[str, Any] | None,
               pairing: str = "qr") -> dict[str, Any]:
    """The bot as a WhatsAppBot would show it, for wabot.console.views (`pairing`: the
    spec's pairing method)."""
    session = session if view.state is State.RUNNING else None
    worker = {k: v for k, v in (session or {}).items() if k in SESSION_FIELDS}
    if view.state is State.BACKOFF and not worker.get("lastError"):
        worker["lastError"] = f"the worker exited with code {view.last_exit_code}"
    return {
        "metadata": {"namespace": namespace, "name": view.name},
        "spec": {"serverName": view.server_name, "pairing": {"method": pairing},
                 "suspend": view.suspended or not view.desired},
        "status": {"phase": _phase(view, session), "restarts": view.restarts,
                   "conditions": [_ready(view)], "worker": worker},
    }


class Supervised(Protocol):
    """What the console needs of the monolith."""

    def views(self, name: str | None = None) -> list[BotView]: ...

    def pairing_method(self, name: str) -> str: ...

    def worker_token(self, name: str) -> str | None: ...

    def set_running(self, name: str, running: bool) -> bool: ...

    def restart_process(self, name: str) -> bool: ...


class LocalBots:
    """The console's data and actions from the monolith's own workers (fleet.console_web's
    ConsoleBots); every bot is in one namespace, the group's name or `local`."""

    def __init__(self, bots: Supervised, namespace: str, poller: SessionPoller) -> None:
        self.bots = bots
        self.namespace = namespace
        self.poller = poller

    def _objects(self, name: str | None = None) -> list[dict[str, Any]]:
        self.poller.wanted()
        return [bot_object(self.namespace, v, self.poller.latest(v.name),
                           self.bots.pairing_method(v.name)) for v in self.bots.views(name)]

    def _one(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._objects(name) if namespace == self.namespace and name else []
        return found[0] if found else None

    def rows(self) -> list[dict[str, Any]]:
        return [views.row(o) for o in self._objects()]

    def detail(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._one(namespace, name)
        if obj is None:
            return None
        return {**views.detail(obj), "actions": list(ACTIONS), "events": None,
                "eventsError": EVENTS_NOTE}

    def qr(self, namespace: str, name: str) -> bytes | None:
        obj = self._one(namespace, name)
        payload = (obj["status"]["worker"].get("pairing") or {}).get("qr") if obj else None
        return qr_svg(payload) if payload else None

    def act(self, namespace: str, name: str, action: str) -> tuple[int, dict[str, Any]]:
        """Suspend/resume on the supervisor (a restart too when the worker is not running);
        restart, pairing and logout through the worker's session API."""
        obj = self._one(namespace, name)
        if obj is None:
            return 404, {"error": f"there is no bot {namespace}/{name}"}
        if action in ("suspend", "resume"):
            self.bots.set_running(name, action == "resume")
            return 200, {"done": action, "requestId": None}
        view = self.bots.views(name)[0]
        token = self.bots.worker_token(name)
        if view.state is not State.RUNNING or view.port is None or token is None:
            if action == "restart" and self.bots.restart_process(name):
                return 200, {"done": action, "requestId": None}
            return 409, {"error": "the bot's worker is not running: resume or restart it first"}
        path, body = f"/v1/session/{action}", None
        if action == "pairing" and obj["spec"]["pairing"]["method"] == "code":
            path = "/v1/session/restart"  # a new code comes from a new session in its mode
        elif action == "pairing":
            body = {"method": "qr"}
        try:
            status, answer = call_worker(view.port, token, "POST", path, body, timeout=10.0)
        except WorkerCallError as exc:
            return 502, {"error": str(exc)}
        return answer_of(status, answer, action)
