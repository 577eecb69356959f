"""/livez, /readyz and /metrics on the standard library's HTTP server (a thread, ~no memory).

- /livez: the process is worth keeping — the pipeline and connection threads are alive. A
  worker that is merely disconnected, waiting for the Lease or logged out is still live:
  restarting it would not help and would lose the state it reports.
- /readyz: the bot is serving — connected to WhatsApp and holding the Lease (or just connected
  when there is no Kubernetes).
- /metrics: Prometheus text format from the worker's own registry.
- POST /v1/messages (only with WABOT_API_TOKEN): the send-message API, called by the gateway
  (api.py). Bodies above 64 KiB are refused before they are read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .api import JSON, MAX_BODY, Answer, error
from .logs import get_logger

log = get_logger("http")


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[], bytes],
        messages: Callable[[Mapping[str, str], bytes], Answer] | None = None,
    ) -> None:
        checks = {"/livez": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            server_version = "wabot-worker"
            sys_version = ""

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        self._send(200, metrics(), CONTENT_TYPE_LATEST)
                    elif path in checks:
                        ok, detail = checks[path]()
                        body = (("ok" if ok else "not ok") + (f": {detail}" if detail else ""))
                        self._send(200 if ok else 503, (body + "\n").encode())
                    else:
                        self._send(404, b"not found\n")
                except Exception:
                    log.exception("health endpoint failed", extra={"path": path})
                    self._send(500, b"internal error\n")

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if path != "/v1/messages" or messages is None:
                    self._send(404, b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or "0")
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    self.close_connection = True
                    answer = error(413, "body_too_large", f"at most {MAX_BODY} bytes")
                else:
                    body = self.rfile.read(length)
                    try:
                        answer = messages({k.lower(): v for k, v in self.headers.items()},
                                          body)
                    except Exception:
                        log.exception("send API request failed")
                        answer = error(500, "internal_error", "the worker failed to process "
                                       "the request")
                self._send(answer.status, answer.body, JSON, answer.headers)

            def _send(
                self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
                headers: Mapping[str, str] | None = None,
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
