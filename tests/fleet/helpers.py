"""Shared test helpers: polling with a deadline (never a sleep as an assertion), a supervisor
running on a thread of the test, and tiny HTTP children standing in for a worker."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fleet.supervisor import Supervisor
from tests.support.polling import eventually

T = TypeVar("T")

# A stand-in for a worker: serves /livez and /readyz on HTTP_PORT; `CRASH_AFTER` seconds makes
# it exit 3 on its own; `HANG_LIVEZ` makes /livez fail.
FAKE_WORKER = r"""
import http.server, os, sys, threading, time, signal
port = int(os.environ["HTTP_PORT"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/livez" and os.environ.get("HANG_LIVEZ"):
            self.send_response(500); self.end_headers(); return
        body = b"ok"
        if self.path == "/metrics":
            body = b"# HELP fake_total A fake counter\n# TYPE fake_total counter\nfake_total 7\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
signal.signal(signal.SIGTERM, lambda *a: (srv.shutdown(), sys.exit(0)) if False else os._exit(0))
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
crash = float(os.environ.get("CRASH_AFTER") or 0)
if crash:
    threading.Timer(crash, lambda: os._exit(3)).start()
srv.serve_forever()
"""


def fake_worker_argv() -> tuple[str, ...]:
    return (sys.executable, "-c", FAKE_WORKER)


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0,
             interval: float = 0.05) -> T:
    """`eventually` with the fleet suite's argument order (what first) and defaults."""
    return eventually(fn, timeout, interval, what)  # type: ignore[return-value]


@contextmanager
def running_supervisor(sup: Supervisor, probe_interval_s: float = 0.2) -> Iterator[Supervisor]:
    """Run the loop on a thread (tests only: in production it owns the main thread)."""
    stop = threading.Event()
    t = threading.Thread(target=sup.run, args=(stop, 0.05, probe_interval_s), daemon=True)
    t.start()
    try:
        yield sup
    finally:
        stop.set()
        t.join(timeout=60)
        assert not t.is_alive(), "supervisor did not shut down"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def http_get(url: str, token: str | None = None, method: str = "GET",
             timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (urllib.error.URLError, OSError):
        return 0, b""  # not listening (yet)


def http_json(url: str, token: str | None = None, method: str = "GET") -> tuple[int, Any]:
    code, body = http_get(url, token, method)
    return code, json.loads(body) if body else None


def assert_one_declaration_per_family(text: str) -> None:
    """Prometheus rejects a scrape that declares a family twice."""
    seen: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            key = " ".join(line.split()[:3])
            assert key not in seen, f"declared twice: {key}"
            seen.add(key)
