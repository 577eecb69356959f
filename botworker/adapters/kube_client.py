"""A small Kubernetes API client for the worker: stdlib only (http.client, ssl, json).

Why not the `kubernetes` package: importing any part of it runs its `__init__`, which loads
its ~1,000 generated model classes, urllib3, requests, oauthlib, websocket-client and yaml.
In an idle worker that was ~9 MiB of its ~96 MiB RSS (docs/benchmarks/worker-memory.md), for the
handful of calls the worker makes: get/list/watch its own WhatsAppBot, merge-patch its status,
get and merge-patch its Lease. The operator keeps the full client.

Credentials, as client-go resolves them:

- in a pod (KUBERNETES_SERVICE_HOST set and a ServiceAccount token mounted): the token, the
  CA and the service's host/port. The token is projected and rotated by the kubelet, so it is
  re-read from the file every minute and at once after a 401;
- elsewhere: $KUBECONFIG (the first file of a list that exists; ~/.kube/config without it),
  current context; a client certificate (file or data), a bearer token (or tokenFile), the
  CA (file or data) or the system's CAs. exec and auth-provider plugins are refused with a
  clear error: the worker runs them nowhere.

Connections are HTTP/1.1 keep-alive, taken from a small pool so the status and Lease threads
reuse them instead of paying a TLS handshake per renewal; a watch holds one of its own.
Errors are `ApiError` (HTTP status, reason, the API server's message; never a header or a
token) or the socket/TLS error itself.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .kubeconfig import (
    KubeConfigError,
    Materialized,
    kubeconfig_path,
    load_document,
    named_entry,
    relative_path,
    tls_context,
)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
TOKEN_REFRESH_S = 60.0  # client-go re-reads a projected token every minute as well
_POOL_MAX = 4
Timeout = tuple[float, float]  # (connect incl. TLS handshake, each read)
DEFAULT_TIMEOUT: Timeout = (5.0, 10.0)


class ApiError(Exception):
    """A non-2xx answer. `message` is the API server's Status message (it names the object
    and the user, never a credential)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"HTTP {status} {reason}" + (f": {message}" if message else ""))


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


class TokenSource:
    """A bearer token, fixed or read from a file that may be rotated under us."""

    def __init__(self, token: str | None = None, path: Path | None = None,
                 refresh_s: float = TOKEN_REFRESH_S) -> None:
        self._token = token
        self._path = path
        self._refresh_s = refresh_s
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def rotates(self) -> bool:
        return self._path is not None

    def get(self, force: bool = False) -> str | None:
        if self._path is None:
            return self._token
        with self._lock:
            now = time.monotonic()
            if force or self._token is None or now - self._read_at >= self._refresh_s:
                try:
                    self._token = self._path.read_text().strip()
                except OSError as exc:
                    if self._token is None:
                        raise KubeConfigError(
                            f"cannot read the token file {self._path}: {exc.strerror}") from None
                    # Keep the last token: the kubelet swaps the file atomically, a failed
                    # read is transient, and the API server will say if the token expired.
                self._read_at = now
            return self._token


class KubeClient:
    """The API server at `server` (https://host:port). `server` may be reassigned; pooled
    connections to the previous address are dropped."""

    def __init__(self, server: str, context: ssl.SSLContext,
                 token: TokenSource | None = None) -> None:
        self.server = server
        self._context = context
        self._token = token or TokenSource()
        self._pool: list[tuple[str, http.client.HTTPSConnection]] = []
        self._lock = threading.Lock()

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_environment(cls) -> KubeClient:
        """In a pod: its ServiceAccount. Elsewhere: $KUBECONFIG (or ~/.kube/config)."""
        if os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
            return cls.in_cluster()
        return cls.from_kubeconfig()

    @classmethod
    def in_cluster(cls, sa_dir: Path = SA_DIR, env: Mapping[str, str] | None = None,
                   refresh_s: float = TOKEN_REFRESH_S) -> KubeClient:
        env = os.environ if env is None else env
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise KubeConfigError("KUBERNETES_SERVICE_HOST/PORT are not set: not in a pod")
        if ":" in host:
            host = f"[{host}]"  # IPv6
        ca = sa_dir / "ca.crt"
        if not ca.exists():
            raise KubeConfigError(f"no CA at {ca}")
        token = TokenSource(path=sa_dir / "token", refresh_s=refresh_s)
        token.get()  # a missing token fails here, at start, not at the first request
        return cls(f"https://{host}:{port}", tls_context(ca_file=ca), token)

    @classmethod
    def with_token(cls, server: str, token: str, *, ca_file: str | Path | None = None
                   ) -> KubeClient:
        """A fixed bearer token (e.g. from the TokenRequest API) and the cluster's CA."""
        return cls(server.rstrip("/"), tls_context(ca_file=Path(ca_file) if ca_file else None),
                   TokenSource(token=token))

    @classmethod
    def from_kubeconfig(cls, path: str | Path | None = None) -> KubeClient:
        """The current context of `path`, else of $KUBECONFIG (first existing file of a
        list), else of ~/.kube/config."""
        file = kubeconfig_path(path)
        cfg = load_document(file)
        ctx_name = cfg.get("current-context")
        if not ctx_name:
            raise KubeConfigError(f"{file} has no current-context")
        ctx = named_entry(cfg, "contexts", ctx_name, file).get("context") or {}
        cluster = named_entry(cfg, "clusters", ctx.get("cluster"), file).get("cluster") or {}
        user = (named_entry(cfg, "users", ctx["user"], file).get("user") or {}) if ctx.get("user") \
            else {}
        server = cluster.get("server")
        if not server or not str(server).startswith("https://"):
            raise KubeConfigError(f"{file}: the cluster's server must be an https:// URL")
        for unsupported in ("exec", "auth-provider"):
            if user.get(unsupported):
                raise KubeConfigError(f"{file}: user {unsupported} plugins are not supported "
                                      "by the worker; use a token or a client certificate")
        base = file.parent
        with Materialized() as m:
            context = tls_context(
                ca_file=m.path(cluster, "certificate-authority", base),
                insecure=bool(cluster.get("insecure-skip-tls-verify")),
                cert_file=m.path(user, "client-certificate", base),
                key_file=m.path(user, "client-key", base),
            )
        if cluster.get("tls-server-name"):
            raise KubeConfigError(f"{file}: tls-server-name is not supported by the worker")
        if user.get("tokenFile"):
            token = TokenSource(path=relative_path(base, user["tokenFile"]))
        else:
            token = TokenSource(token=user.get("token"))
        return cls(str(server).rstrip("/"), context, token)

    # --- requests ----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json",
                timeout: Timeout = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """One call; the decoded JSON answer, or ApiError for a non-2xx status. A 401 with a
        rotating token re-reads it and tries once more."""
        data = None if body is None else json.dumps(body).encode()
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        for attempt in (0, 1):
            status, reason, payload = self._exchange(method, url, data, content_type, timeout,
                                                     force_token=attempt == 1)
            if status == 401 and attempt == 0 and self._token.rotates:
                continue
            if 200 <= status < 300:
                return json.loads(payload) if payload else {}
            raise _error(status, reason, payload)
        raise AssertionError("unreachable")

    def watch(self, path: str, query: Mapping[str, str], *, timeout_s: int,
              connect_timeout_s: float = DEFAULT_TIMEOUT[0],
              on_connection: Callable[[socket.socket | None], None] | None = None,
              ) -> Iterator[WatchEvent]:
        """Stream the watch events of `path` until the server ends the watch (after about
        `timeout_s`). An ERROR event raises ApiError with its code (410: the resourceVersion
        is too old, relist). `on_connection(sock)` receives the socket, so another thread can
        shut it down to end a blocked read."""
        q = {**query, "watch": "true", "timeoutSeconds": str(timeout_s)}
        url = path + "?" + urllib.parse.urlencode(q)
        # The server closes the stream after timeout_s; a read that waits much longer than
        # that is a dead connection, not a quiet watch.
        conn = self._connect(connect_timeout_s, timeout_s + 30.0)
        try:
            if on_connection is not None:
                on_connection(conn.sock)
            conn.request("GET", url, headers=self._headers(None, False))
            resp = conn.getresponse()
            if resp.status != 200:
                raise _error(resp.status, resp.reason, resp.read())
            while True:
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("reason") or ""),
                                   str(obj.get("message") or ""))
                yield WatchEvent(str(kind), obj)
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for _, conn in pool:
            conn.close()

    # --- plumbing ----------------------------------------------------------------------------

    def _headers(self, content_type: str | None, force_token: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "wabot-worker"}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._token.get(force=force_token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _connect(self, connect_s: float, read_s: float) -> http.client.HTTPSConnection:
        u = urllib.parse.urlsplit(self.server)
        conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, timeout=connect_s,
                                           context=self._context)
        conn.connect()  # TCP and TLS handshake, bounded by the connect timeout
        assert conn.sock is not None
        conn.sock.settimeout(read_s)
        return conn

    def _take(self) -> http.client.HTTPSConnection | None:
        with self._lock:
            while self._pool:
                server, conn = self._pool.pop()
                if server == self.server:
                    return conn
                conn.close()
        return None

    def _give(self, conn: http.client.HTTPSConnection, server: str) -> None:
        with self._lock:
            if server == self.server and len(self._pool) < _POOL_MAX:
                self._pool.append((server, conn))
                return
        conn.close()

    def _exchange(self, method: str, url: str, data: bytes | None, content_type: str,
                  timeout: Timeout, *, force_token: bool) -> tuple[int, str, bytes]:
        headers = self._headers(content_type if data is not None else None, force_token)
        server = self.server
        conn = self._take()
        if conn is not None:
            assert conn.sock is not None
            conn.sock.settimeout(timeout[1])
            try:
                return self._send(conn, server, method, url, data, headers)
            except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLEOFError,
                    ssl.SSLZeroReturnError):
                # The server closed the idle connection (or it died with the last server):
                # once more on a new one. Safe for the worker's calls: GETs, a status merge
                # patch that says the same again, a Lease patch conditional on its
                # resourceVersion.
                pass
        conn = self._connect(*timeout)
        return self._send(conn, server, method, url, data, headers)

    def _send(self, conn: http.client.HTTPSConnection, server: str, method: str, url: str,
              data: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._give(conn, server)
        return resp.status, resp.reason, payload


def _error(status: int, reason: str, payload: bytes) -> ApiError:
    message = ""
    try:
        doc = json.loads(payload)
        if isinstance(doc, dict):
            message = str(doc.get("message") or "")
    except ValueError:
        pass
    return ApiError(status, reason, message[:500])


def shutdown_socket(sock: socket.socket | None) -> None:
    """End a blocked read on `sock` from another thread."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
