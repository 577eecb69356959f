"""Fixtures for the worker: the real neonize client, real event protobufs, the real dispatcher.

The one seam is the send: `RecordingClient` is neonize's own `NewClient` with `send_message`
overridden to record instead of dialling WhatsApp. `build_reply_message` (which the worker uses
to quote a command, as `reply_message` does) is neonize's real code, and its result goes to
`send_message`. Events are serialized and pushed
through `client.event.execute(...)` exactly as neonize's Go side does.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from botworker.config import WorkerConfig, load_config
from botworker.worker import Worker
from tests.support import polling
from wabot.spec import WhatsAppBotSpec

PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"


REPO = Path(__file__).resolve().parents[2]
# What a worker process started by a test must not inherit from the caller's environment.
_WORKER_SETTINGS = ("BOT_ID", "SERVER_NAME", "ROLE", "WABOT_SPEC_SOURCE", "DATABASE_URL",
                    "WABOT_WEBHOOK_ALLOW_CIDRS", "WABOT_WEBHOOK_ALLOW_HOSTS",
                    "WABOT_WEBHOOK_DENY_CIDRS")


def worker_process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process a test starts: this repo importable, its auth dir
    under `tmp_path`, none of the caller's worker settings but those in `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _WORKER_SETTINGS}
    env.update({"AUTH_DIR": str(tmp_path / "auth"), "PYTHONPATH": str(REPO), **extra})
    return env


# The worker suite polls in-process state: short defaults, a tight interval.
wait_for = functools.partial(polling.eventually, timeout=5.0, interval=0.01)


def recording_client(path: str) -> Any:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import SendResponse

    class _Recording(NewClient):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.sent: list[tuple[Any, Any]] = []
            self.read: list[str] = []
            self.rejected: list[tuple[str, str]] = []
            self.fail_sends = False
            self.uploads: list[bytes] = []
            self.receipts: list[tuple[str, str, tuple[str, ...]]] = []
            self.presences: list[tuple[str, int, int]] = []
            self._lock = threading.Lock()

        def send_message(self, to: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            if self.fail_sends:
                from neonize.exc import SendMessageError

                raise SendMessageError("recorded failure")
            if isinstance(message, str):
                # What neonize's send_message builds from a plain string (no mentions, no
                # link preview) before its Go call.
                from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

                message = Message(conversation=message)
            with self._lock:
                self.sent.append((to, message))
                return SendResponse(ID=f"S{len(self.sent)}", Timestamp=int(time.time()))

        def upload(self, binary: bytes, media_type: Any = None) -> Any:
            """The network half of neonize's media builders (whatsmeow encrypts and uploads):
            recorded, answered with neonize's own UploadResponse."""
            import hashlib

            from neonize.proto.Neonize_pb2 import UploadResponse

            with self._lock:
                self.uploads.append(bytes(binary))
                n = len(self.uploads)
            return UploadResponse(
                url=f"https://mmg.whatsapp.net/v/t62/u{n}", DirectPath=f"/v/t62/u{n}",
                MediaKey=os.urandom(32), FileSHA256=hashlib.sha256(binary).digest(),
                FileEncSHA256=hashlib.sha256(b"enc" + binary).digest(),
                FileLength=len(binary))

        # Receipts, presence and call rejections are outgoing network sends too: recorded.
        def mark_read(self, *message_ids: str, **kwargs: Any) -> None:
            with self._lock:
                self.read.extend(message_ids)
                if "chat" in kwargs:
                    self.receipts.append((kwargs["chat"].User, kwargs["sender"].User,
                                          message_ids))

        def send_chat_presence(self, jid: Any, state: Any, media: Any) -> None:
            with self._lock:
                self.presences.append((jid.User, state.value, media.value))

        def reject_call(self, call_from: Any, call_id: str) -> None:
            with self._lock:
                self.rejected.append((call_from.User, call_id))

        def texts(self) -> list[str]:
            with self._lock:
                return [
                    m.extendedTextMessage.text or m.conversation for _, m in self.sent
                ]

        def replies(self) -> list[tuple[str, str, str]]:
            """(chat user, text, quoted message id) per sent message."""
            with self._lock:
                return [
                    (
                        to.User,
                        m.extendedTextMessage.text or m.conversation,
                        m.extendedTextMessage.contextInfo.stanzaID,
                    )
                    for to, m in self.sent
                ]

    return _Recording(path)


def dispatch(client: Any, ev: Any) -> None:
    """Deliver `ev` the way neonize's Go side does: serialized bytes at an address, handed to
    the client's real event dispatcher."""
    from neonize.events import EVENT_TO_INT

    data = ev.SerializePartialToString()
    buf = ctypes.create_string_buffer(data, len(data))
    client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[type(ev)])


def dispatch_raw(client: Any, ev_type: Any, data: bytes) -> None:
    from neonize.events import EVENT_TO_INT

    buf = ctypes.create_string_buffer(data, len(data))
    client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[ev_type])


_counter = iter(range(1, 10**9))


def message_ev(
    text: str = "!ping",
    chat: str = "15550001111",
    sender: str | None = None,
    *,
    msg_id: str | None = None,
    from_me: bool = False,
    group: bool = False,
    server: str = "s.whatsapp.net",
) -> Any:
    from neonize.events import MessageEv
    from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
    from neonize.utils import build_jid

    chat_server = "g.us" if group else server
    return MessageEv(
        Info=MessageInfo(
            MessageSource=MessageSource(
                Chat=build_jid(chat, chat_server),
                Sender=build_jid(sender or chat),
                IsFromMe=from_me,
                IsGroup=group,
            ),
            ID=msg_id or f"MSG{next(_counter)}",
            Pushname="Tester",
            Timestamp=int(time.time() * 1000),
        ),
        Message=Message(conversation=text),
    )


def worker_config(tmp_path: Path, bot: str = "bot-a", tenant: str = "tenant-a",
                  **env: str) -> WorkerConfig:
    return load_config(
        {
            "BOT_ID": bot,
            "SERVER_NAME": tenant,
            "AUTH_DIR": str(tmp_path / "auth-root"),
            "HTTP_PORT": "0",
            "HTTP_HOST": "127.0.0.1",
            "POD_NAME": f"pod-{bot}",
            **env,
        }
    )


class Harness:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.client: Any = worker.client

    def feed(self, ev: Any) -> None:
        dispatch(self.client, ev)

    def connect(self) -> None:
        from neonize.events import ConnectedEv

        self.feed(ConnectedEv(status=True))
        wait_for(lambda: self.worker.ready()[0], what="worker ready")

    def say(self, text: str, **kw: Any) -> Any:
        ev = message_ev(text, **kw)
        self.feed(ev)
        return ev

    def ask(self, text: str, timeout: float = 5.0, **kw: Any) -> str:
        """Send one message and return the one reply to it."""
        before = len(self.client.sent)
        ev = self.say(text, **kw)
        wait_for(lambda: len(self.client.sent) > before, timeout=timeout,
                 what=f"a reply to {text!r}")
        _, reply, quoted = self.client.replies()[before]
        assert quoted == ev.Info.ID, "the reply must quote the command"
        return str(reply)

    def settle(self) -> None:
        wait_for(self.worker.pipeline.idle, what="pipeline idle")
        wait_for(self.worker.pipeline.idle, what="pipeline idle (again)")

    def metric(self, name: str, **labels: str) -> float:
        return self.worker.metrics.value(name, **labels)


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Build and start a worker on a recording client; no real dial (`connect()` would only
    fail without WhatsApp), connection events come through the dispatcher instead."""
    made: list[Worker] = []

    def make(
        spec: WhatsAppBotSpec | None = None,
        *,
        bot: str = "bot-a",
        tenant: str = "tenant-a",
        plugins: list[Any] | None = None,
        connect: bool = True,
        env: dict[str, str] | None = None,
        **kw: Any,
    ) -> Harness:
        cfg = worker_config(tmp_path / bot, bot, tenant, **(env or {}))
        spec = spec or WhatsAppBotSpec(server_name=tenant, bot_id=bot)
        client = recording_client(str(cfg.session_path.parent / "session.sqlite3"))
        cfg.session_dir.mkdir(parents=True, exist_ok=True)
        w = Worker(
            cfg, spec, client=client, sessions_enabled=False, terminal=False,
            plugins_available=plugins, **kw,
        )
        made.append(w)
        w.start()
        # start() posts the Lease verdict to the connection thread: let it be applied, so a
        # test's first look (or its first QR) does not race the session start.
        assert w.connection.sync()
        h = Harness(w)
        if connect:
            h.connect()
        return h

    yield make
    for w in made:
        w.stop(5.0)


@pytest.fixture
def plugin_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the test plugin distribution (a dist-info with `wabot.plugins` entry points) on
    sys.path, so importlib.metadata discovers it like an installed package."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    import importlib

    importlib.invalidate_caches()
    return PLUGIN_DIR
