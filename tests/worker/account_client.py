"""A neonize client whose calls that would reach WhatsApp's servers for the account (logout,
pairing by phone, groups, contacts, presence) answer as whatsmeow would, with neonize's own
protobuf classes, and record what they were asked. Everything above those methods is
neonize's real code; nothing leaves the machine.

`AccountWorld` is the state those answers come from: the groups the account is in, who is
on WhatsApp, the LID of each phone number. A test sets it up and reads what was done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from botworker.worker import Worker
from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, worker_config

OWN = "4915100000001"


@dataclass
class Group:
    jid: str
    name: str
    topic: str = ""
    participants: dict[str, str] = field(default_factory=dict)  # user -> "" | admin | super
    announce: bool = False
    locked: bool = False
    link_code: str = "AbCdEfGhIjKl"


@dataclass
class AccountWorld:
    groups: dict[str, Group] = field(default_factory=dict)
    on_whatsapp: set[str] = field(default_factory=set)
    lids: dict[str, str] = field(default_factory=dict)  # phone -> lid user
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)  # method -> whatsmeow's error text

    def record(self, *call: Any) -> None:
        self.calls.append(call)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


def account_client(path: str, world: AccountWorld) -> Any:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import SendResponse

    class _Account(NewClient):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.world = world
            self.sent: list[tuple[Any, Any]] = []
            self._lock = threading.Lock()

        def _check(self, method: str) -> None:
            err = self.world.fail.get(method)
            if err is not None:
                raise Exception(err)  # neonize raises its *Error classes with Go's text

        def send_message(self, to: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.sent.append((to, message))
                return SendResponse(ID=f"S{len(self.sent)}", Timestamp=int(time.time()))

        def logout(self) -> None:
            self.world.record("logout")
            self._check("logout")

        def PairPhone(self, phone: str, show_push_notification: bool,
                      client_name: Any = None, client_type: Any = None) -> str:
            self.world.record("PairPhone", phone)
            return "ABCD-EFGH"

    return _Account(path)


class AccountHarness(Harness):
    def __init__(self, worker: Worker, world: AccountWorld) -> None:
        super().__init__(worker)
        self.world = world


@pytest.fixture
def make_account_worker(tmp_path: Path) -> Iterator[Callable[..., AccountHarness]]:
    """make_worker's twin on the account client (same Worker, same wiring)."""
    made: list[Worker] = []

    def make(spec: WhatsAppBotSpec | None = None, *, bot: str = "bot-a",
             tenant: str = "tenant-a", connect: bool = True, env: dict[str, str] | None = None,
             world: AccountWorld | None = None, **kw: Any) -> AccountHarness:
        world = world or AccountWorld()
        cfg = worker_config(tmp_path / bot, bot, tenant, **(env or {}))
        spec = spec or WhatsAppBotSpec(server_name=tenant, bot_id=bot)
        cfg.session_dir.mkdir(parents=True, exist_ok=True)
        client = account_client(str(cfg.session_path), world)
        w = Worker(cfg, spec, client=client, sessions_enabled=False, terminal=False, **kw)
        made.append(w)
        w.start()
        assert w.connection.sync()
        h = AccountHarness(w, world)
        if connect:
            h.connect()
        return h

    yield make
    for w in made:
        w.stop(5.0)
