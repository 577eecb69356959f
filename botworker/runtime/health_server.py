"""/livez, /readyz and /metrics on the shared standard-library server kit (`wabot.httpserver`:
a thread per connection, ~no memory).

- /livez: the process is worth keeping — the pipeline and connection threads are alive. A
  worker that is merely disconnected, waiting for the Lease or logged out is still live:
  restarting it would not help and would lose the state it reports.
- /readyz: the bot is serving — connected to WhatsApp and holding the Lease (or just connected
  when there is no Kubernetes).
- /metrics: Prometheus text format from the worker's own registry. Open, like the probes: in a
  pod the chart's PodMonitor scrapes it without credentials (the chart's optional bots
  NetworkPolicy limits who reaches the port), it names only this bot, and in the tiers
  without Kubernetes the worker listens on 127.0.0.1, behind the monolith, whose own
  /metrics takes the token.
- POST /v1/messages (only with WABOT_API_TOKEN): the send-message API, called by the gateway
  (api.py).

The kit refuses a body above 64 KiB, or with a negative, malformed or missing-but-chunked
length, before reading it and before the token is checked; each request must arrive within
10 s; at most 32 connections are served at once (the gateway, the kubelet's probes and a
scraper need a handful).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wabot.httpserver import HttpServer, Limits, Request, Response

from ..logs import get_logger
from .message_api import JSON, MAX_BODY, Answer, error

log = get_logger("http")

LIMITS = Limits(max_body=MAX_BODY, timeout_s=10.0, max_connections=32)
TEXT = "text/plain; charset=utf-8"


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
        limits: Limits = LIMITS,
    ) -> None:
        checks = {"/livez": live, "/readyz": ready}

        def get(path: str) -> Response:
            if path == "/metrics":
                return Response(200, metrics(), CONTENT_TYPE_LATEST)
            if path in checks:
                ok, detail = checks[path]()
                body = ("ok" if ok else "not ok") + (f": {detail}" if detail else "")
                return Response(200 if ok else 503, (body + "\n").encode(), TEXT)
            return Response(404, b"not found\n", TEXT)

        def post(req: Request) -> Response:
            if req.path != "/v1/messages" or messages is None:
                return Response(404, b"not found\n", TEXT)
            try:
                answer = messages(req.headers, req.body)
            except Exception:
                log.exception("send API request failed")
                answer = error(500, "internal_error", "the worker failed to process the request")
            return Response(answer.status, answer.body, JSON, answer.headers)

        def handle(req: Request) -> Response:
            try:
                if req.method == "GET":
                    return get(req.path)
                if req.method == "POST":
                    return post(req)
                return Response(404, b"not found\n", TEXT)
            except Exception:
                log.exception("health endpoint failed", extra={"path": req.path})
                return Response(500, b"internal error\n", TEXT)

        self._server = HttpServer(host, port, handle, limits=limits, name="http",
                                  server_version="wabot-worker")

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
