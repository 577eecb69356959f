"""The controller's console (issue 27): the same pages as the monolith's, fed by its worker
groups. Each group is a monolith with a console of its own (its bots in the namespace named
after the group); the controller asks them with the groups' internal token, which never leaves
the controller, and a page only ever talks to the controller.

The fleet view asks every group once per page poll, in parallel; a bot's page, its QR code and
its session actions go to the one group that owns the bot. Suspend and resume go through the
controller's own start/stop, which remembers them across group restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import quote

from wabot.console import views

from .console import WorkerCallError, answer_of, fetch, fetch_json

API = "/console/api/bots"


def _unanswered(group: str, name: str, tenant: str) -> dict[str, Any]:
    """The row of a bot whose group did not answer: it is still listed, with the reason."""
    why = f"its worker group {group} is not answering (starting, restarting or stuck)"
    return views.row({
        "metadata": {"namespace": group, "name": name}, "spec": {"serverName": tenant},
        "status": {"phase": "Pending", "conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "GroupNotAnswering",
             "message": why}]}})


class Groups(Protocol):
    """What the console needs of the controller's WorkerGroups."""

    @property
    def names(self) -> Sequence[str]: ...

    @property
    def token(self) -> str: ...

    @property
    def owner(self) -> dict[str, str]: ...

    def url(self, group: str) -> str | None: ...


class GroupBots:
    """fleet.console_web's ConsoleBots over the controller's groups. `start_stop(name,
    action)` is the controller's own bot start/stop: (HTTP status, message)."""

    def __init__(self, groups: Groups, start_stop: Callable[[str, str], tuple[int, str]],
                 tenant_of: Callable[[str], str]) -> None:
        self.groups = groups
        self.start_stop = start_stop
        self.tenant_of = tenant_of

    def _get(self, group: str, path: str) -> tuple[int, bytes]:
        url = self.groups.url(group)
        if url is None:
            return 0, b""
        try:
            return fetch(url + path, self.groups.token)
        except WorkerCallError:
            return 0, b""

    def _owned(self, namespace: str, name: str) -> bool:
        """A page names a bot as group/name: only the group that owns it is asked."""
        return self.groups.owner.get(name) == namespace

    def rows(self) -> list[dict[str, Any]]:
        def ask(group: str) -> list[dict[str, Any]]:
            url = self.groups.url(group)
            if url is None:
                return []
            try:
                status, body = fetch_json(url + API, self.groups.token)
            except WorkerCallError:
                return []
            items = body.get("items") if status == 200 else None
            return [i for i in items or [] if isinstance(i, dict)]

        names = list(self.groups.names)
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            rows = [row for found in pool.map(ask, names) for row in found]
        seen = {row.get("name") for row in rows}
        return rows + [_unanswered(group, name, self.tenant_of(name))
                       for name, group in sorted(self.groups.owner.items()) if name not in seen]

    def detail(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self._owned(namespace, name):
            return None
        url = self.groups.url(namespace)
        if url is None:
            return None
        try:
            status, body = fetch_json(f"{url}{API}/{quote(namespace)}/{quote(name)}",
                                      self.groups.token)
        except WorkerCallError:
            return None
        return body if status == 200 else None

    def qr(self, namespace: str, name: str) -> bytes | None:
        if not self._owned(namespace, name):
            return None
        status, svg = self._get(namespace, f"{API}/{quote(namespace)}/{quote(name)}/qr.svg")
        return svg if status == 200 else None

    def act(self, namespace: str, name: str, action: str) -> tuple[int, dict[str, Any]]:
        if not self._owned(namespace, name):
            return 404, {"error": f"there is no bot {namespace}/{name}"}
        if action in ("suspend", "resume"):
            status, message = self.start_stop(name, "stop" if action == "suspend" else "start")
            return (200, {"done": action, "requestId": None}) if status == 202 else (
                status, {"error": message})
        url = self.groups.url(namespace)
        if url is None:
            return 503, {"error": f"{namespace} is not running; try again when it is back"}
        try:
            status, answer = fetch_json(
                f"{url}{API}/{quote(namespace)}/{quote(name)}/actions/{action}",
                self.groups.token, "POST", timeout=15.0)
        except WorkerCallError as exc:
            return 502, {"error": str(exc)}
        return (200, answer) if status == 200 else answer_of(status, answer, action)
