"""Issue 21, findings 4, 10 and 11: what an unauthenticated client can do to wabot's two HTTP
servers (the worker's, and the monolith's / controller's), tried against the real servers on
127.0.0.1.

- A request body's length is checked before a byte of it is read and before the token: a
  negative, non-numeric or huge `Content-Length`, or a chunked body, is answered at once with
  a JSON error and the connection closed (the monolith used to `read(-1)` until the client
  stopped: 38 -> 340 MiB before its 401).
- Half-open connections neither become a thread each nor stay forever: a connection cap
  answers the excess with 503 at once, and each request must arrive within a deadline.
- The fleet tiers listen on 127.0.0.1 unless told otherwise, and their /metrics (every bot and
  tenant by name) wants the token when one is set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from pydantic import SecretStr

from tests.fleet.helpers import FAKE_WORKER, http_get, wait_for
from tests.security import record
from tests.support.net import free_port
from tests.worker.conftest import worker_process_env
from wabot.httpserver import Limits

REPO = Path(__file__).resolve().parents[2]
SECTION = record.SECTION
TOKEN = "security-test-token-0123456789"
BOTS = """---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: alpha}
spec: {serverName: acme}
"""


@dataclass
class Server:
    """A real server process and the route of it that wants the token."""

    proc: subprocess.Popen[bytes]
    port: int
    guarded: str  # "POST /path"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fleet_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A monolith or controller whose bots are tiny stand-in workers (the HTTP server under
    test does not care what runs behind it)."""
    fake = tmp / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    bots = tmp / "bots.yaml"
    bots.write_text(BOTS)
    env = {k: v for k, v in os.environ.items()
           if k not in ("ROLE", "WABOT_HTTP_HOST", "WABOT_HTTP_PORT", "WABOT_CONTROLLER_TOKEN",
                        "KUBERNETES_SERVICE_HOST", "WABOT_BOTS_DSN")}
    env.update({"WABOT_BOTS_FILE": str(bots), "AUTH_DIR": str(tmp / "data"),
                "WABOT_WORKER_COMMAND": f"{sys.executable} {fake}",
                "WABOT_STOP_GRACE_SECONDS": "5", "PYTHONPATH": str(REPO), **extra})
    return env


def start_fleet(tmp: Path, role: str, **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = fleet_env(tmp, WABOT_HTTP_PORT=str(port), **extra)
    log = (tmp / f"{role}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "wabot_cli", role], env=env, cwd=tmp,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_for(f"{role} listening", lambda: proc.poll() is not None
             or http_get(f"http://127.0.0.1:{port}/livez")[0] == 200, timeout=30)
    assert proc.poll() is None, (tmp / f"{role}.log").read_text()[-3000:]
    return proc, port


@pytest.fixture(scope="module")
def monolith(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("monolith")
    proc, port = start_fleet(tmp, "monolith", WABOT_HTTP_HOST="127.0.0.1",
                             WABOT_CONTROLLER_TOKEN=TOKEN)
    try:
        yield Server(proc, port, "POST /reload")
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real worker (`python -m botworker`) with the send API on."""
    tmp = tmp_path_factory.mktemp("worker")
    port = free_port()
    spec = tmp / "bot.yaml"
    spec.write_text("serverName: tenant-a\nbotId: bot-a\n")
    env = worker_process_env(tmp, BOT_ID="bot-a", SERVER_NAME="tenant-a", HTTP_PORT=str(port),
                             HTTP_HOST="127.0.0.1", WABOT_SPEC_SOURCE=f"file:{spec}",
                             WABOT_API_TOKEN=TOKEN, WABOT_SHUTDOWN_TIMEOUT_SECONDS="10")
    proc = subprocess.Popen([sys.executable, "-m", "botworker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("worker listening", lambda: proc.poll() is not None
                 or http_get(f"http://127.0.0.1:{port}/livez")[0] == 200, timeout=60)
        assert proc.poll() is None
        yield Server(proc, port, "POST /v1/messages")
    finally:
        _stop(proc)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after it


def exchange(port: int, data: bytes, wait: float = 10.0) -> Reply:
    """Send `data` as is and read until the server closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        raw, closed = b"", False
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                raw += chunk
        except TimeoutError:
            pass
    assert raw, f"no answer within {wait}s to {data[:80]!r}"
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return Reply(int(lines[0].split()[1]), headers, body, closed)


def request_head(route: str, *headers: str) -> bytes:
    method, path = route.split()
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()


@pytest.fixture(params=["monolith", "worker"])
def any_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue(request.param)
    return server


# --- finding 4: the body's length, before reading and before auth ---------------------------


@pytest.mark.parametrize(("length", "status", "code"), [
    ("-1", 400, "invalid_content_length"),
    ("-65536", 400, "invalid_content_length"),
    ("abc", 400, "invalid_content_length"),
    ("0x10", 400, "invalid_content_length"),
    ("1" * 5000, 413, "body_too_large"),  # past int()'s digit limit
    (str(2**40), 413, "body_too_large"),
])
def test_a_bad_content_length_is_refused_without_reading_the_body(
        any_server: Server, length: str, status: int, code: str) -> None:
    """Headers only, no body and no token: the answer comes at once (the old monolith waited
    for the body of `-1` forever), it is the length's error and not the token's, and the
    connection is closed since its body was never read."""
    reply = exchange(any_server.port,
                     request_head(any_server.guarded, f"Content-Length: {length}"))
    assert reply.status == status
    assert json.loads(reply.body)["error"] == code
    assert reply.closed


def test_an_upload_sized_body_needs_the_token_before_a_byte_is_read(worker: Server) -> None:
    """POST /v1/messages takes uploads (tens of MiB), but only from the gateway, which holds
    the bot's token: a stranger who reaches the pod's port announcing 1 MiB is refused at once
    with the default limit, so 32 connections cannot make the worker hold 32 large bodies."""
    size = 1024 * 1024
    stranger = exchange(worker.port, request_head(
        worker.guarded, "Content-Type: multipart/form-data; boundary=x",
        f"Content-Length: {size}", "Authorization: Bearer not-the-token"))
    assert stranger.status == 413 and stranger.closed
    assert json.loads(stranger.body)["error"] == "body_too_large"
    # With the token the same length is taken: the server waits for the body instead.
    with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as s:
        s.sendall(request_head(worker.guarded, "Content-Type: multipart/form-data; boundary=x",
                               f"Content-Length: {size}", f"Authorization: Bearer {TOKEN}"))
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            s.recv(1)  # no answer yet: it is reading a body it agreed to take


def test_a_chunked_body_is_refused(any_server: Server) -> None:
    reply = exchange(any_server.port, request_head(
        any_server.guarded, "Transfer-Encoding: chunked") + b"10000\r\n")
    assert reply.status == 411
    assert json.loads(reply.body)["error"] == "length_required"
    assert reply.closed


def test_conflicting_lengths_are_refused(any_server: Server) -> None:
    reply = exchange(any_server.port, request_head(
        any_server.guarded, "Content-Length: 2", "Content-Length: 40000") + b"{}")
    assert reply.status == 400 and reply.closed


def test_a_valid_request_still_reaches_the_token_check(any_server: Server) -> None:
    reply = exchange(any_server.port, request_head(
        any_server.guarded, "Content-Length: 2", "Connection: close") + b"{}")
    assert reply.status == 401


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def test_a_negative_length_cannot_fill_the_monolith_memory(monolith: Server) -> None:
    """The attack as reported: `Content-Length: -1`, then a stream of bytes. The server must
    not hold them: its RSS stays where it was while 64 MiB are offered."""
    before = rss_kib(monolith.proc.pid)
    chunk = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", monolith.port), timeout=10) as s:
        try:
            s.sendall(request_head(monolith.guarded, "Content-Length: -1"))
            for _ in range(64):
                s.sendall(chunk)
        except OSError:
            pass  # refused and closed: the server stopped listening to it
        grown_mib = (rss_kib(monolith.proc.pid) - before) / 1024
    assert grown_mib < 16, f"the monolith's RSS grew {grown_mib:.0f} MiB"
    assert http_get(monolith.url + "/livez")[0] == 200
    record.finding("4", "Content-Length: -1 and 64 MiB of body to the monolith, no token",
                   f"400 before reading or auth; RSS {grown_mib:+.1f} MiB (reported: +302 MiB)")


# --- finding 10: half-open connections, trickles, the connection cap -----------------------


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads"))


def test_300_half_open_connections_do_not_become_300_threads(any_server: Server) -> None:
    """Each connection sends half a request and stops (the report: 302 of them, 310 threads,
    all alive after 90 s). The 301st, a whole request, is answered 503 by the cap (accepts
    are in order, so every earlier connection has been handled by then); the process has far
    fewer new threads than connections (the caps are 64 and 32; the exact cap is checked
    in-process below); and once the clients give up, a normal request is served again."""
    pid = any_server.proc.pid
    base = thread_count(pid)
    conns = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", any_server.port), timeout=10)
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            conns.append(s)
        extra = exchange(any_server.port, request_head("GET /livez", "Connection: close"))
        grown = thread_count(pid) - base
        assert grown < 100, f"{grown} new threads for 300 half-open connections"
        assert extra.status == 503
        assert json.loads(extra.body)["error"] == "too_many_connections"
        role = "worker" if "/v1/messages" in any_server.guarded else "monolith"
        record.finding("10", f"300 half-open connections to the {role} HTTP server",
                       f"+{grown} threads (reported: +308, all alive after 90 s); the 301st "
                       "answered 503 at once; closed after the 10-s request deadline")
    finally:
        for s in conns:
            s.close()
    wait_for("a normal request served again",
             lambda: http_get(any_server.url + "/livez")[0] == 200, timeout=20)


class Served(Protocol):
    @property
    def port(self) -> int: ...

    def stop(self) -> None: ...


@pytest.fixture(params=["worker", "fleet"])
def short_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """The real servers, in this process, with a 1 s request deadline and a cap of 8: the
    worker's HealthServer and the fleet's ApiServer with the real monolith's routes."""
    limits = Limits(timeout_s=1.0, max_connections=8)
    server: Served
    if request.param == "worker":
        from botworker.runtime.health_server import HealthServer

        server = HealthServer("127.0.0.1", 0, live=lambda: (True, ""),
                              ready=lambda: (True, ""), metrics=lambda: b"", limits=limits)
        server.start()
    else:
        from fleet.http import ApiServer
        from fleet.monolith import Monolith, MonolithSettings

        mono = Monolith(MonolithSettings(token=SecretStr(TOKEN), run_dir=tmp_path))
        server = ApiServer("127.0.0.1", 0, mono.routes(), TOKEN, limits=limits).start()
    try:
        yield server
    finally:
        server.stop()


def _closed_by_server(s: socket.socket) -> bool:
    """True once the server closed `s` (EOF or reset after whatever it answered)."""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_open_connections_are_capped_and_then_closed(short_server: Served) -> None:
    port = short_server.port
    base = threading.active_count()
    conns = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /livez HTTP/1.1\r\n")  # and nothing more
            conns.append(s)
        over = exchange(port, request_head("GET /livez", "Connection: close"))
        assert over.status == 503 and over.closed
        assert threading.active_count() <= base + 8
        for s in conns:
            s.setblocking(False)
        # Past the deadline every one of them is closed by the server, none by the client.
        wait_for("every half-open connection closed by the server",
                 lambda: all(_closed_by_server(s) for s in conns), timeout=15, interval=0.1)
    finally:
        for s in conns:
            s.close()
    reply = exchange(port, request_head("GET /livez", "Connection: close"))
    assert reply.status == 200


def test_a_trickling_client_is_cut_off_at_the_deadline(short_server: Served) -> None:
    """One header byte every 0.1 s would keep a per-read timeout happy forever; the request's
    deadline (1 s here) closes the connection anyway."""
    port = short_server.port
    trickle = b"GET /livez HTTP/1.1\r\nX-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        cut = False
        for byte in trickle:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            time.sleep(0.1)  # pacing the client, not an assertion on speed
        if not cut:
            s.settimeout(5)
            try:
                cut = s.recv(1) == b""
            except OSError:
                cut = True
    assert cut, "the server kept a 20 s trickle of one request open"


# --- the fleet tiers' listen address --------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """The local addresses bound to `port` in LISTEN state (from /proc/net/tcp, IPv4)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:
            out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return out


@pytest.mark.parametrize("role", ["monolith", "controller"])
def test_the_fleet_tiers_listen_on_loopback_by_default(tmp_path: Path, role: str) -> None:
    extra = {"WABOT_CONTROLLER_TOKEN": TOKEN}
    if role == "controller":  # observe-only: no group processes needed for this
        extra.update(WABOT_WORKER_GROUPS="0",
                     WABOT_BOT_URL_TEMPLATE=f"http://127.0.0.1:{free_port()}")
    proc, port = start_fleet(tmp_path, role, **extra)
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        _stop(proc)


def test_the_listen_address_is_still_a_setting() -> None:
    from fleet.controller import ControllerSettings
    from fleet.monolith import MonolithSettings

    assert MonolithSettings.from_env({}).http_host == "127.0.0.1"
    assert ControllerSettings.from_env(
        {"WABOT_CONTROLLER_TOKEN": TOKEN}).base.http_host == "127.0.0.1"
    assert MonolithSettings.from_env({"WABOT_HTTP_HOST": "0.0.0.0"}).http_host == "0.0.0.0"
    assert MonolithSettings.from_env({}, http_host="::").http_host == "::"  # --host
    # In a pod the kubelet's probes and Services reach the pod's address, not its loopback.
    assert MonolithSettings.from_env(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).http_host == "0.0.0.0"


def test_the_compose_controller_says_where_it_listens() -> None:
    """The generated Compose file publishes the controller's port, so it sets the address."""
    from fleet.botsfile import parse_documents
    from fleet.compose import render_compose

    compose, _ = render_compose(parse_documents(BOTS))
    assert compose.services["controller"].environment["WABOT_HTTP_HOST"] == "0.0.0.0"


# --- finding 11: /metrics behind the token --------------------------------------------------


def test_monolith_metrics_need_the_token(monolith: Server) -> None:
    assert http_get(monolith.url + "/metrics")[0] == 401
    assert http_get(monolith.url + "/metrics", "wrong-" + TOKEN)[0] == 401
    code, body = http_get(monolith.url + "/metrics", TOKEN)
    assert code == 200 and b'server_name="acme"' in body
    assert http_get(monolith.url + "/livez")[0] == 200  # probes stay open
    record.finding("11", "/metrics of the monolith without its token",
                   "401 (bots and tenants named only with the token); /livez stays open")


def test_controller_metrics_need_the_token_and_still_federate_its_groups(
        tmp_path: Path) -> None:
    """The groups' own /metrics now want a token too: the controller's scrape of them uses
    the groups' internal token, so every bot's series still arrives."""
    proc, port = start_fleet(tmp_path, "controller", WABOT_HTTP_HOST="127.0.0.1",
                             WABOT_CONTROLLER_TOKEN=TOKEN, WABOT_WORKER_GROUPS="1")
    url = f"http://127.0.0.1:{port}"
    try:
        assert http_get(url + "/metrics")[0] == 401

        def federated() -> bytes | None:
            code, body = http_get(url + "/metrics", TOKEN)
            assert code == 200
            return body if b"fake_total{" in body else None

        body = wait_for("the bot's series through its group", federated, timeout=60,
                        interval=0.5)
        assert b'server_name="acme"' in body
    finally:
        _stop(proc)


def test_without_a_token_monolith_metrics_stay_open(tmp_path: Path) -> None:
    proc, port = start_fleet(tmp_path, "monolith", WABOT_HTTP_HOST="127.0.0.1")
    try:
        assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        _stop(proc)


def test_worker_metrics_stay_open_for_the_pod_monitor(worker: Server) -> None:
    """The chart's PodMonitor scrapes each bot pod without credentials; the worker's series
    name only its own bot (botworker/runtime/health_server.py explains the choice)."""
    code, body = http_get(worker.url + "/metrics")
    assert code == 200 and b'bot="bot-a"' in body

