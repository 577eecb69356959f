"""GET a media file the tenant names by URL, only from an address the egress policy allows.

The URL is the tenant's and the worker sits inside the cluster, exactly as with webhooks
(issue 21, finding 5), so the same policy (wabot/egress.py) decides: the host is resolved once,
every address checked, and the connection made to a checked address (no DNS rebinding). A
redirect is followed (at most MAX_REDIRECTS) only after its target passed the same check.
The body is read up to the kind's size limit, within one deadline for the whole transfer (a
server trickling bytes cannot hold a worker thread), and never handed to anything that would
fetch again: neonize's builders take bytes, never the URL (given a string they would download
it themselves, past the policy).

A refusal says which kind of address the policy refuses (the tenant's own URL; nothing is
connected to); every failure to reach an allowed address has one text, so the answers cannot
map which internal ports are open.
"""

from __future__ import annotations

import http.client
import io
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

from wabot.egress import EgressPolicy, Refused, Resolver, system_resolver

from .. import __version__
from .egress_http import checked, connection

USER_AGENT = f"wabot-media/{__version__}"
MAX_REDIRECTS = 3
UNREACHABLE = "the URL could not be fetched"


class FetchFailed(Exception):
    """The file could not be had; the message says why, for the tenant."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str | None
    file_name: str | None  # the URL path's last segment, a default for documents


@dataclass(frozen=True)
class Fetcher:
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    timeout_s: float = 30.0
    resolver: Resolver = system_resolver
    tls: ssl.SSLContext | None = None

    def get(self, url: str, max_bytes: int) -> Fetched:
        """The body of `url` (following allowed redirects); FetchFailed otherwise."""
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            status, location, content_type, body = self._once(url, max_bytes, deadline)
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if not 200 <= status < 300:
                raise FetchFailed(f"the URL answered HTTP {status}")
            name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None
            return Fetched(body, content_type, name)
        raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")

    def _once(self, url: str, max_bytes: int,
              deadline: float) -> tuple[int, str | None, str | None, bytes]:
        try:
            target, addresses = checked(url, self.policy, self.resolver)
        except Refused as exc:
            raise FetchFailed(f"not allowed: {exc}") from None
        except (OSError, UnicodeError, ValueError):
            raise FetchFailed(UNREACHABLE) from None
        try:
            with connection(target, addresses, _left(deadline), self.tls) as conn:
                conn.request("GET", target.path, headers={"User-Agent": USER_AGENT,
                                                          "Accept": "*/*"})
                resp = conn.getresponse()
                if resp.status in (301, 302, 303, 307, 308):
                    return resp.status, resp.getheader("Location"), None, b""
                if not 200 <= resp.status < 300:
                    return resp.status, None, None, b""
                declared = resp.getheader("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchFailed(f"the file is larger than {max_bytes} bytes")
                body = _read(resp, conn, max_bytes, deadline)
                return resp.status, None, resp.getheader("Content-Type"), body
        except FetchFailed:
            raise
        except Exception:
            raise FetchFailed(UNREACHABLE) from None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed("the download took too long")
    return left


def _read(resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, max_bytes: int,
          deadline: float) -> bytes:
    """The body, gathered in one growing buffer whose bytes are handed out without a copy
    (BytesIO.getvalue): a list of chunks joined at the end held the file twice."""
    out = io.BytesIO()
    size = 0
    while True:
        if conn.sock is not None:
            conn.sock.settimeout(_left(deadline))
        chunk = resp.read1(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"the file is larger than {max_bytes} bytes")
        out.write(chunk)
    return out.getvalue()
