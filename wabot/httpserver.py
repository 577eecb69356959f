"""The one HTTP server kit behind wabot's standard-library servers (the worker's /livez, /readyz,
/metrics and /v1/messages; the monolith's and the controller's API).

Both run where an unauthenticated client can connect, so the connection handling that keeps
such a client from taking the process down lives here, once:

- the body's framing is checked before a byte of it is read, and before any route or token
  check: a `Content-Length` that is not plain digits, negative, repeated with different values
  or above `Limits.max_body` is answered at once (400 / 413) and the connection closed; a
  `Transfer-Encoding` (chunked) body is refused with 411, so no body is ever read without a
  known, bounded length (an `Expect: 100-continue` client gets the refusal instead of the 100);
- every request, from the wait for its first byte through its headers and body, must arrive
  within `Limits.timeout_s` in total: a client that connects and sends nothing, or trickles a
  byte at a time, loses its connection then (a per-read timeout alone would let a trickle hold
  it for hours);
- at most `Limits.max_connections` connections are served at once, one thread each; a
  connection beyond that gets an immediate 503 and is closed by the accepting thread, so no
  number of half-open connections turns into as many threads.

The standard library and not an event loop: the worker image has no aiohttp, this module is
imported at every worker start, and a handful of endpoints polled by probes, Prometheus and
humans need no more. It imports nothing from the tiers (`wabot/` sits below them).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("wabot.http")

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Limits:
    max_body: int = 64 * 1024
    # The whole of one request: idle keep-alive wait, request line, headers and body.
    timeout_s: float = 10.0
    max_connections: int = 64
    # (method, path, Authorization header) -> the body limit for that request, when routes
    # differ (uploads, taken only from a client that presented the token: httproutes).
    body_limit: Callable[[str, str, str | None], int] | None = None
    # (method, path) -> whether that route's handler takes the body over (httproutes'
    # Route.takes_body): the body then arrives as a bytearray, read straight into it, which
    # the handler may empty once it has taken out what it needs (an upload's file), so a
    # large body is not held twice while the request is handled.
    takes_body: Callable[[str, str], bool] | None = None

    def max_body_for(self, method: str, path: str, authorization: str | None = None) -> int:
        if self.body_limit is None:
            return self.max_body
        return self.body_limit(method, path, authorization)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    params: Mapping[str, str] = field(default_factory=dict)  # set by the route (httproutes)
    # A route that takes its body over (Limits.takes_body) gets it here, `body` left empty: a
    # bytearray the handler may empty once it has taken out what it needs.
    buffer: bytearray | None = None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


def refusal(status: int, code: str, message: str) -> Response:
    """The kit's own answers, in the shape of the send API's errors (`wabot.api`)."""
    body = json.dumps({"error": code, "message": message}).encode() + b"\n"
    return Response(status, body)


def check_framing(headers: Any, max_body: int) -> int | Response:
    """The body's length from the request headers, or the answer refusing it; reads nothing.

    `headers` is the parsed `email.message.Message` of the request."""
    if headers.get("Transfer-Encoding") is not None:
        return refusal(411, "length_required", "send the body with a Content-Length; "
                       "Transfer-Encoding (chunked) bodies are not accepted")
    values = {v.strip() for v in headers.get_all("Content-Length") or ()}
    if not values:
        return 0
    if len(values) > 1:
        return refusal(400, "invalid_content_length", "conflicting Content-Length headers")
    (value,) = values
    if not _DIGITS.fullmatch(value):
        return refusal(400, "invalid_content_length",
                       "Content-Length must be a non-negative whole number of bytes")
    # Compared as text first: a 5,000-digit length must not reach int() (it raises there).
    if len(value) > len(str(max_body)) or int(value) > max_body:
        return refusal(413, "body_too_large", f"at most {max_body} bytes")
    return int(value)


class _DeadlineReader(io.RawIOBase):
    """The connection's reading side, failing every read once the request's deadline passed
    (each recv waits at most for what is left of it)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        if left != math.inf:
            self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes the open connections itself
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 site: _Site) -> None:
        self.site = site
        self.limits = site.limits
        self.name = site.name
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        super().__init__(address, handler)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            busy = len(self._open) >= self.limits.max_connections
            if not busy:
                self._open.add(request)
        if busy:
            self._refuse_busy(request)
            return
        try:
            threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name=f"{self.name}-conn", daemon=True).start()
        except RuntimeError:  # no thread to be had: refuse rather than die
            with self._lock:
                self._open.discard(request)
            self._refuse_busy(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)

    def _refuse_busy(self, request: socket.socket) -> None:
        """Answer on the accepting thread without waiting for the client: whatever it already
        sent is drained (so closing sends FIN, not a reset that could discard the answer), the
        503 is written if the socket takes it at once, and the connection is closed."""
        resp = refusal(503, "too_many_connections", "the server is at its connection limit; "
                       "retry shortly")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {resp.content_type}\r\n"
                f"Content-Length: {len(resp.body)}\r\nRetry-After: 1\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            request.setblocking(False)
            with contextlib.suppress(OSError):
                while request.recv(65536):
                    pass
            request.send(head + resp.body)
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # What gets here is a socket error while answering (the handler's own exceptions are
        # 500s): a client that vanished is not worth a traceback on stderr.
        log.debug("connection ended with an error", exc_info=True,
                  extra={"server": self.name})

    def close_open_connections(self) -> None:
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class _Site:
    """What the request handler needs of its server: the application and how to serve it."""

    handle: Handler
    limits: Limits
    name: str
    server_version: str
    access_log: logging.Logger | None


class _RequestHandler(BaseHTTPRequestHandler):
    """One connection: the body's framing checked before it is read, every request within the
    deadline, the application's exception a 500."""

    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def site(self) -> _Site:
        return self.server.site

    def version_string(self) -> str:
        return self.site.server_version  # no Python version for a stranger to match against

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.site.limits.timeout_s)
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.site.limits.timeout_s
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):  # too slow, or gone: drop it
            self.close_connection = True

    def _max_body(self) -> int:
        return self.site.limits.max_body_for(self.command, urlsplit(self.path).path or "/",
                                             self.headers.get("Authorization"))

    def handle_expect_100(self) -> bool:
        framing = check_framing(self.headers, self._max_body())
        if isinstance(framing, Response):
            self._send(framing, close=True)
            return False
        return super().handle_expect_100()

    def _handle(self) -> None:
        framing = check_framing(self.headers, self._max_body())
        if isinstance(framing, Response):
            self._send(framing, close=True)  # the body is never read: not reusable
            return
        body = self._read_body(framing)
        if len(body) < framing:  # the client went away mid-body
            self.close_connection = True
            return
        self._reader.deadline = math.inf
        self.connection.settimeout(self.site.limits.timeout_s)  # for writing the answer
        parts = urlsplit(self.path)
        req = Request(method=self.command, path=parts.path or "/",
                      query=parse_qs(parts.query),
                      headers={k.lower(): v for k, v in self.headers.items()},
                      body=body if isinstance(body, bytes) else b"",
                      buffer=body if isinstance(body, bytearray) else None)
        try:
            resp = self.site.handle(req)
        except Exception:
            log.exception("request failed", extra={"server": self.site.name, "path": req.path})
            resp = refusal(500, "internal_error", "internal error")
        self._send(resp)

    def _read_body(self, length: int) -> bytes | bytearray:
        """The body: bytes, or for a route that takes it over a bytearray of its declared
        length read into at once (either way one copy of it; short when the client left)."""
        takes = self.site.limits.takes_body
        if not length or takes is None or not takes(self.command,
                                                    urlsplit(self.path).path or "/"):
            return self.rfile.read(length) if length else b""
        body = bytearray(length)
        got = self.rfile.readinto(body)
        del body[got:]
        return body

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle

    def _send(self, resp: Response, close: bool = False) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.site.access_log is not None:
            self.site.access_log.debug("http %s", format % args)


class HttpServer:
    """Serves `handle` on a daemon thread; `port=0` picks a free port (see `.port`).

    `handle` gets only requests whose body arrived whole and within the limits; an exception in
    it is a 500. `access_log`: a logger for one DEBUG line per request (off for the worker,
    whose probes every few seconds would drown its logs)."""

    def __init__(self, host: str, port: int, handle: Handler, *, limits: Limits | None = None,
                 name: str = "http", server_version: str = "wabot",
                 access_log: logging.Logger | None = None) -> None:
        self.limits = limits or Limits()
        site = _Site(handle, self.limits, name, server_version, access_log)
        self._server = _Server((host, port), _RequestHandler, site)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._server.close_open_connections()
