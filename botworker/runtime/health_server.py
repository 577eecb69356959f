"""The worker's HTTP endpoint on the shared standard-library kit (`wabot.httpserver`: a thread
per connection, ~no memory) and its routing (`wabot.httproutes`).

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
- /v1/... (only with WABOT_API_TOKEN): the bot API the gateway forwards to (`api_routes`, each
  declared by its own module: message_api.py, ...), every route behind the bot's token.

The kit refuses a body above the route's limit (64 KiB unless the route says otherwise), or
with a negative, malformed or missing-but-chunked length, before reading it and before the
token is checked; each request must arrive within 10 s; at most 32 connections are served at
once (the gateway, the kubelet's probes and a scraper need a handful).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wabot import httproutes
from wabot.httproutes import Route
from wabot.httpserver import HttpServer, Limits, Request, Response

from ..logs import get_logger
from .api_answers import MAX_BODY, error

log = get_logger("http")

LIMITS = Limits(max_body=MAX_BODY, timeout_s=10.0, max_connections=32)
TEXT = "text/plain; charset=utf-8"


def _refuse(status: int, code: str, message: str, headers: Mapping[str, str]) -> Response:
    if status == 404:  # the probes' and scrapers' plain 404, as before the API had routes
        return Response(404, b"not found\n", TEXT)
    answer = error(status, code, message)
    return Response(answer.status, answer.body, answer.content_type,
                    {**answer.headers, **headers})


class HealthServer(HttpServer):
    """The worker's endpoint: the probes, /metrics and, with a token, the API routes."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[], bytes],
        api_token: str | None = None,
        api_routes: Sequence[Route] = (),
        limits: Limits = LIMITS,
    ) -> None:
        def check(probe: Callable[[], tuple[bool, str]]) -> Callable[[Request], Response]:
            def answer(_req: Request) -> Response:
                ok, detail = probe()
                body = ("ok" if ok else "not ok") + (f": {detail}" if detail else "")
                return Response(200 if ok else 503, (body + "\n").encode(), TEXT)
            return answer

        routes = [
            Route("GET", "/livez", check(live)),
            Route("GET", "/readyz", check(ready)),
            Route("GET", "/metrics",
                  lambda _req: Response(200, metrics(), CONTENT_TYPE_LATEST)),
        ]
        if api_token is not None:
            routes += [Route(r.method, r.pattern, r.handler, True, r.max_body, r.takes_body)
                       for r in api_routes]
        self.routes = routes

        def handle(req: Request) -> Response:
            try:
                return httproutes.dispatch(self.routes, api_token, req, _refuse)
            except Exception:
                log.exception("worker endpoint failed", extra={"path": req.path})
                return error(500, "internal_error", "the worker failed to process the request")

        super().__init__(host, port, handle,
                         limits=httproutes.limits_for(routes, limits, api_token),
                         name="http", server_version="wabot-worker")
