"""A real webhook receiver for the tests: the standard library's HTTP server on 127.0.0.1, in a
thread, that checks every delivery's signature the way the README tells receivers to, and can
be taken down (connections refused), brought back on the same port, or made slow (each request
waits until the test releases it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.net import free_port


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result

    @property
    def delivery_id(self) -> str:
        return self.headers["x-wabot-delivery"]


class Receiver:
    def __init__(self, secret: bytes, status: int = 200) -> None:
        self.secret = secret
        self.status = status
        self.port = free_port()
        self.deliveries: list[Delivery] = []
        self.gate: threading.Event | None = None  # set: slow mode, requests wait for it
        self.waiting = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/wabot"

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        """The receiver side of the README's scheme, written out independently of wabot.events."""
        timestamp = headers.get("x-wabot-timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        return fresh and hmac.compare_digest(expected, headers.get("x-wabot-signature", ""))

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                gate = receiver.gate
                if gate is not None:
                    with receiver._lock:
                        receiver.waiting += 1
                    gate.wait(60)
                    with receiver._lock:
                        receiver.waiting -= 1
                with receiver._lock:
                    receiver.deliveries.append(
                        Delivery(headers, body, receiver.verify(headers, body)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if self.status < 300]

    def unique(self) -> dict[str, Delivery]:
        """What a receiver that dedupes by X-Wabot-Delivery keeps (the first copy of each)."""
        out: dict[str, Delivery] = {}
        for d in self.accepted():
            out.setdefault(d.delivery_id, d)
        return out
