"""Issue 21, finding 5: a tenant's spec.webhook.url must not make the worker a proxy into the
cluster (the metadata endpoint, the API server, other pods, the pod's own loopback), and the
worker's logs must not tell an open internal port from a closed one.

Everything here is on loopback. An audit hook (`guard`) records every connection and name
lookup the test process makes while a test runs and blocks any that would leave this machine,
so a target that should be refused proves it was refused by *no connection attempt at all*, and
a broken policy could not send a packet anywhere. Receivers are real sockets on 127.0.0.1
(127.0.0.2, ::1) that record each connection they accept. Names other than `localhost` resolve
through the worker's resolver hook (WebhookSettings.resolver / post(resolver=)), real code that
the delivery path calls exactly where it would call getaddrinfo.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from botworker.adapters.webhook_post import UNREACHABLE, Attempt, post
from botworker.config import ConfigError, load_config
from fleet.workers import inherited_env
from tests.security import record
from tests.worker.conftest import wait_for, worker_process_env
from wabot.egress import EgressPolicy, system_resolver
from wabot.spec import WhatsAppBotSpec

HEADERS = {"Content-Type": "application/json", "X-Wabot-Event": "message"}
BODY = b'{"event":"message"}'


# --- the network guard ----------------------------------------------------------------------


def _loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


class Guard:
    def __init__(self) -> None:
        self.armed = False
        self.connects: list[tuple[str, int]] = []
        self.lookups: list[str] = []
        self.blocked: list[str] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        if event == "socket.connect" and isinstance(args[1], tuple):
            host, port = str(args[1][0]), int(args[1][1])
            self.connects.append((host, port))
            if not _loopback(host):
                self.blocked.append(f"connect {host}")
                raise PermissionError("test guard: a connection off this machine was blocked")
        elif event == "socket.getaddrinfo" and args[0] is not None:
            host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            self.lookups.append(host)
            if host != "localhost" and not _numeric(host):
                self.blocked.append(f"lookup {host}")
                raise PermissionError("test guard: a DNS lookup was blocked")


GUARD = Guard()
sys.addaudithook(GUARD.hook)


@pytest.fixture
def guard() -> Iterator[Guard]:
    GUARD.connects.clear()
    GUARD.lookups.clear()
    GUARD.blocked.clear()
    GUARD.armed = True
    try:
        yield GUARD
    finally:
        GUARD.armed = False


# --- receivers --------------------------------------------------------------------------------


class Listener:
    """A TCP receiver that records every connection it accepts. `mode`: "ok" answers 204,
    "redirect" answers 302 to `location`, "hang" never answers, "garbage" is not HTTP."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, mode: str = "ok",
                 location: str = "", tls: ssl.SSLContext | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.mode, self.location, self.tls = mode, location, tls
        self.accepted: list[Any] = []
        self.requests: list[bytes] = []
        self.sni: list[str | None] = []
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.accepted.append(peer)
            self._open.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._open.append(conn)
            if self.mode == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                conn.close()
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head)
            if self.mode == "hang":
                self._stop.wait(30)
                return
            if self.mode == "redirect":
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + self.location.encode()
                             + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            conn.close()

    def header(self, name: str) -> str:
        head = self.requests[-1].decode()
        return next(line.split(":", 1)[1].strip() for line in head.split("\r\n")[1:]
                    if line.lower().startswith(name.lower() + ":"))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(*args: Any, **kw: Any) -> Listener:
        made.append(Listener(*args, **kw))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def table_resolver(table: dict[str, Sequence[str]]) -> Callable[[str, int], Sequence[str]]:
    """Names this test gives addresses (the way cluster DNS gives kubernetes.default.svc
    one); `localhost` through the system's resolver (/etc/hosts); anything else fails as an
    unknown name."""
    def resolve(host: str, port: int) -> Sequence[str]:
        if host in table:
            return table[host]
        if host == "localhost":
            return system_resolver(host, port)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return resolve


def deliver(url: str, policy: EgressPolicy | None = None,
            table: dict[str, Sequence[str]] | None = None, timeout_s: float = 5.0,
            tls: ssl.SSLContext | None = None) -> Attempt:
    return post(url, BODY, dict(HEADERS), timeout_s, policy=policy,
                resolver=table_resolver(table or {}), tls=tls)


# --- finding 5: every form of the attack is refused before any connection ----------------------

# {port}: a listener on 127.0.0.1; {port6}: one on ::1. Names resolve through TABLE.
TABLE = {"kubernetes.default.svc": ["10.96.0.1"], "kube-api.test": ["127.0.0.1"],
         "rebind.test": ["127.0.0.1"], "mixed.test": ["10.0.0.7", "::1"]}
SECTION = record.SECTION
REFUSED: set[str] = set()  # the targets refused so far in this session (for the figure)
SSRF_TARGETS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://127.0.0.1:{port}/hook",
    "https://kubernetes.default.svc/api/v1/namespaces/default/secrets",
    "https://kube-api.test:{port}/api",
    "http://[::1]:{port6}/hook",
    "http://0x7f000001:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://0177.0.0.1:{port}/hook",
    "http://127.1:{port}/hook",
    "http://127.0.0.1.:{port}/hook",
    "http://localhost:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://[::ffff:7f00:1]:{port6}/hook",
    "http://[::127.0.0.1]:{port}/hook",
    "http://[64:ff9b::7f00:1]:{port}/hook",
    "http://0.0.0.0:{port}/hook",
    "http://10.1.2.3/", "http://172.16.0.10/", "http://192.168.1.1/", "http://100.64.0.1/",
    "http://[fc00::1]/", "http://[fe80::1]/", "http://224.0.0.1/",
    "http://mixed.test:{port6}/hook",
]


@pytest.mark.parametrize("template", SSRF_TARGETS)
def test_internal_targets_are_refused_without_any_connection(
        template: str, guard: Guard, listeners: Callable[..., Listener]) -> None:
    v4, v6 = listeners("127.0.0.1"), listeners("::1")
    url = template.format(port=v4.port, port6=v6.port)
    attempt = deliver(url, table=TABLE)
    assert not attempt.ok
    assert attempt.detail == UNREACHABLE
    assert attempt.refused is not None  # refused by the policy, not by the network
    assert guard.connects == [] and guard.blocked == []
    assert v4.accepted == [] and v6.accepted == []
    REFUSED.add(template)
    record.finding("5", "webhook URLs at loopback, link-local, metadata, private and cluster "
                   "addresses (numeric tricks, names resolving there)",
                   f"{len(REFUSED)}/{len(SSRF_TARGETS)} forms refused, 0 connections or "
                   "lookups off the checked address; refused, closed, unresolvable and timed-"
                   "out targets give one error text")


ALLOWED = EgressPolicy.parse("127.0.0.0/8, ::1/128")


@pytest.mark.parametrize("template", [
    "http://127.0.0.1:{port}/hook",
    "http://kube-api.test:{port}/hook",
    "http://[::1]:{port6}/hook",
    "http://localhost:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
])
def test_the_same_targets_are_delivered_when_the_admin_allow_lists_them(
        template: str, guard: Guard, listeners: Callable[..., Listener]) -> None:
    v4, v6 = listeners("127.0.0.1"), listeners("::1")
    url = template.format(port=v4.port, port6=v6.port)
    attempt = deliver(url, policy=ALLOWED, table=TABLE)
    assert attempt == Attempt(True, "HTTP 204")
    assert len(v4.accepted) + len(v6.accepted) == 1
    assert guard.blocked == []


@pytest.mark.parametrize("template", [
    "http://0x7f000001:{port}/", "http://2130706433:{port}/", "http://127.1:{port}/",
    "http://0.0.0.0:{port}/", "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/", "http://224.0.0.1:{port}/",
])
def test_metadata_numeric_tricks_and_any_address_stay_refused_whatever_is_allowed(
        template: str, guard: Guard, listeners: Callable[..., Listener]) -> None:
    v4 = listeners("127.0.0.1")
    everything = EgressPolicy.parse("0.0.0.0/0, ::/0")
    attempt = deliver(template.format(port=v4.port), policy=everything)
    assert (attempt.ok, attempt.detail) == (False, UNREACHABLE) and attempt.refused
    assert guard.connects == [] and v4.accepted == []


def test_an_allow_listed_host_name_and_the_deny_list(guard: Guard,
                                                     listeners: Callable[..., Listener]) -> None:
    v4 = listeners("127.0.0.1")
    table = {"hooks.internal": ["127.0.0.1"], "other.internal": ["127.0.0.1"],
             "public.test": ["8.8.8.8"]}
    by_name = EgressPolicy.parse(allow_hosts="hooks.internal")
    assert deliver(f"http://hooks.internal:{v4.port}/", by_name, table).ok
    assert not deliver(f"http://other.internal:{v4.port}/", by_name, table).ok
    assert len(v4.accepted) == 1
    # The deny list wins over the allow-list, and covers public ranges too (say, a cluster
    # whose service range is not a private one).
    denied = EgressPolicy.parse("127.0.0.0/8", deny_cidrs="127.0.0.1/32, 8.8.8.0/24")
    for url in (f"http://127.0.0.1:{v4.port}/", "http://public.test/"):
        attempt = deliver(url, denied, table)
        assert not attempt.ok and attempt.refused and "DENY" in attempt.refused
    assert len(v4.accepted) == 1 and guard.blocked == [] and len(guard.connects) == 1


# --- one error text --------------------------------------------------------------------------


def test_refused_closed_unresolvable_timeout_and_non_http_look_the_same(
        guard: Guard, listeners: Callable[..., Listener]) -> None:
    """A port scan through the webhook learns nothing: refused by the policy, nobody listening,
    a name that does not resolve, a receiver that never answers and a port that speaks another
    protocol all give the same text (and the same metric label, `retried`)."""
    open_port = listeners("127.0.0.1")
    hang, garbage = listeners("127.0.0.1", mode="hang"), listeners("127.0.0.1", mode="garbage")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nobody listens there once this socket is closed
    allowed = EgressPolicy.parse("127.0.0.1/32")
    attempts = {
        "refused": deliver(f"http://127.0.0.1:{open_port.port}/"),
        "closed": deliver(f"http://127.0.0.1:{closed}/", allowed),
        "unresolvable": deliver("http://no-such-host.test/", allowed),
        "timeout": deliver(f"http://127.0.0.1:{hang.port}/", allowed, timeout_s=0.5),
        "not http": deliver(f"http://127.0.0.1:{garbage.port}/", allowed),
    }
    assert {a.detail for a in attempts.values()} == {UNREACHABLE}
    assert not any(a.ok for a in attempts.values())
    # Only a policy refusal has a reason, for the one log line to the admin: the kind of
    # address, not the address, not the port.
    reason = attempts["refused"].refused
    assert reason is not None and "loopback" in reason
    assert str(open_port.port) not in reason and "127.0.0.1" not in reason
    assert [a.refused for k, a in attempts.items() if k != "refused"] == [None] * 4
    assert open_port.accepted == [] and guard.blocked == []


# --- no DNS rebinding window, TLS against the URL's host, no redirects ------------------------


def test_the_connection_goes_to_the_address_that_was_checked(
        guard: Guard, listeners: Callable[..., Listener]) -> None:
    """The name is resolved once: a DNS answer that changes after the check (to the pod's own
    loopback here) is never used, and never looked up."""
    checked = listeners("127.0.0.2")
    for _ in range(20):
        try:
            internal = listeners("127.0.0.1", port=checked.port)
            break
        except OSError:  # the port is taken on 127.0.0.1: try another pair
            checked = listeners("127.0.0.2")
    else:
        pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")
    answers = iter([["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return next(answers)

    policy = EgressPolicy.parse("127.0.0.2/32")
    attempt = post(f"http://rebind.test:{checked.port}/hook", BODY, dict(HEADERS), 5.0,
                   policy=policy, resolver=rebinding)
    assert attempt == Attempt(True, "HTTP 204")
    assert calls == ["rebind.test"]
    assert len(checked.accepted) == 1 and internal.accepted == []
    assert checked.header("Host") == f"rebind.test:{checked.port}"
    # The socket layer only ever saw the checked address, never the name.
    assert guard.connects == [("127.0.0.2", checked.port)] and guard.lookups == ["127.0.0.2"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate for hooks.test it signed (openssl, as README's snippets use)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=wabot test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "hook.key", "-out", "hook.csr",
            "-subj", "/CN=hooks.test")
    (d / "ext.cnf").write_text("subjectAltName=DNS:hooks.test\n")
    openssl("x509", "-req", "-in", "hook.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "hook.pem", "-days", "2", "-extfile", "ext.cnf")
    return d


def test_https_is_verified_against_the_urls_host(
        certificates: Path, guard: Guard, listeners: Callable[..., Listener]) -> None:
    """Connecting to the checked address, the worker still sends the URL's host as the TLS
    server name and verifies the certificate against it (and the Host header carries it)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificates / "hook.pem", certificates / "hook.key")
    seen: list[str | None] = []
    server.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore
    receiver = listeners("127.0.0.1", tls=server)
    client = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    table = {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
    allowed = EgressPolicy.parse("127.0.0.1/32")
    attempt = deliver(f"https://hooks.test:{receiver.port}/in", allowed, table, tls=client)
    assert attempt == Attempt(True, "HTTP 204")
    assert seen == ["hooks.test"]
    assert receiver.header("Host") == f"hooks.test:{receiver.port}"
    # The same address under a name the certificate does not cover: refused by TLS.
    wrong = deliver(f"https://other.test:{receiver.port}/in", allowed, table, tls=client)
    assert (wrong.ok, wrong.detail, wrong.refused) == (False, UNREACHABLE, None)
    assert len(receiver.requests) == 1 and guard.blocked == []


def test_redirects_are_not_followed(guard: Guard, listeners: Callable[..., Listener]) -> None:
    inner = listeners("127.0.0.1")
    outer = listeners("127.0.0.1", mode="redirect",
                      location=f"http://127.0.0.1:{inner.port}/latest/meta-data/")
    attempt = deliver(f"http://127.0.0.1:{outer.port}/hook", EgressPolicy.parse("127.0.0.1"))
    assert attempt == Attempt(False, "HTTP 302")  # a failure, retried like any other
    assert len(outer.accepted) == 1 and inner.accepted == []


# --- who sets the allow-list -----------------------------------------------------------------


BASE_ENV = {"BOT_ID": "bot-a", "SERVER_NAME": "tenant-a", "AUTH_DIR": "/nonexistent"}


def test_the_allow_list_is_the_admins_setting() -> None:
    cfg = load_config({**BASE_ENV, "WABOT_WEBHOOK_ALLOW_CIDRS": "10.20.0.0/16, 127.0.0.1",
                       "WABOT_WEBHOOK_ALLOW_HOSTS": "hooks.tenant-a.svc.cluster.local",
                       "WABOT_WEBHOOK_DENY_CIDRS": "10.20.30.0/24"})
    policy = cfg.webhook_egress
    assert [str(n) for n in policy.allow] == ["10.20.0.0/16", "127.0.0.1/32"]
    assert policy.allow_hosts == {"hooks.tenant-a.svc.cluster.local"}
    assert [str(n) for n in policy.deny] == ["10.20.30.0/24"]
    assert load_config(BASE_ENV).webhook_egress == EgressPolicy()  # nothing internal
    for env, needle in ((("WABOT_WEBHOOK_ALLOW_CIDRS", "10.0.0.0/33"), "ALLOW_CIDRS"),
                        (("WABOT_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"), "ALLOW_HOSTS"),
                        (("WABOT_WEBHOOK_DENY_CIDRS", "cluster"), "DENY_CIDRS")):
        with pytest.raises(ConfigError, match=needle):
            load_config({**BASE_ENV, env[0]: env[1]})


@pytest.mark.parametrize("name", ["WABOT_WEBHOOK_ALLOW_CIDRS", "WABOT_WEBHOOK_ALLOW_HOSTS",
                                  "WABOT_WEBHOOK_DENY_CIDRS"])
def test_a_bots_own_env_cannot_open_the_policy(name: str) -> None:
    """spec.env is the tenant's: it cannot set the admin's egress settings (the model refuses
    it, as the CRD's rule does, tests/contract/test_crd_samples.py), while a fleet supervisor's
    own value is passed down to its workers."""
    with pytest.raises(ValidationError, match="set by wabot itself"):
        WhatsAppBotSpec.model_validate({"serverName": "tenant-a",
                                        "env": [{"name": name, "value": "0.0.0.0/0"}]})
    assert inherited_env({name: "10.0.0.0/8", "DATABASE_URL": "x"}).get(name) == "10.0.0.0/8"


# --- the worker process ----------------------------------------------------------------------


def _run_worker(tmp_path: Path, url: str, until: Callable[[list[dict[str, Any]]], bool],
                **env: str) -> list[dict[str, Any]]:
    """A real worker process whose spec.webhook points at `url`, until its log satisfies
    `until`; its JSON log records. An invalid proxy keeps it from dialling WhatsApp (its
    `connection` event is what it delivers)."""
    tmp_path.mkdir()
    spec = tmp_path / "bot.yaml"
    spec.write_text("serverName: tenant-a\nbotId: bot-a\nwebhook:\n"
                    f"  url: {url}\n  secretRef: {{name: hook}}\n  events: [connection]\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botworker"],
        env=worker_process_env(
            tmp_path, BOT_ID="bot-a", SERVER_NAME="tenant-a", HTTP_PORT="0",
            HTTP_HOST="127.0.0.1", WABOT_SPEC_SOURCE=f"file:{spec}",
            WABOT_WEBHOOK_SECRET="whsec-egress-test-key", WABOT_PROXY_URL="socks4://no-dial",
            WABOT_WEBHOOK_BACKOFF_CAP_SECONDS="0.2", WABOT_SHUTDOWN_TIMEOUT_SECONDS="10", **env),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("{"):
                records.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: until(list(records)), timeout=60, what="the worker's webhook logs")
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return records


def test_a_worker_refuses_its_loopback_webhook_unless_allow_listed(
        tmp_path: Path, listeners: Callable[..., Listener]) -> None:
    receiver = listeners("127.0.0.1")
    url = f"http://127.0.0.1:{receiver.port}/hook"

    def failed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r["msg"] == "webhook delivery failed; will retry"]

    records = _run_worker(tmp_path / "default", url, lambda rs: len(failed(rs)) >= 3)
    assert receiver.accepted == []
    assert {r["error"] for r in failed(records)} == {UNREACHABLE}
    # Why, once, for the admin: the kind of address and the setting, not the port.
    (why,) = [r for r in records if "egress policy;" in r["msg"]]
    assert why["reason"] == "the URL's host is a loopback address"
    assert "WABOT_WEBHOOK_ALLOW_CIDRS" in why["allow_with"]
    assert str(receiver.port) not in why["reason"]

    _run_worker(tmp_path / "allowed", url, lambda rs: bool(receiver.requests),
                WABOT_WEBHOOK_ALLOW_CIDRS="127.0.0.1/32")
    assert receiver.requests and receiver.requests[0].startswith(b"POST /hook HTTP/1.1")
