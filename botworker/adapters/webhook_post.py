"""One signed webhook POST, made only to an address the egress policy allows.

Where a delivery may go is egress.py's decision (issue 21, finding 5): the URL is the tenant's,
the worker sits inside the cluster. `post` resolves the host once, checks every address, and
connects to an address it checked (the Host header and the TLS server name stay the URL's
host). A refused target is never connected to, and every attempt that reaches no receiver,
refused, unresolvable, closed, timed out or not speaking HTTP, reports the same `UNREACHABLE`
text and the same metric label, so neither the logs nor the metrics can map which internal
ports are open; why a target is refused is logged once per target, naming only the kind of
address. Redirects are never followed.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from wabot.egress import EgressPolicy, Refused, Resolver, system_resolver

from .. import __version__
from .egress_http import checked, connection

USER_AGENT = f"wabot-webhook/{__version__}"
# How much of a receiver's answer is read (and thrown away) before the connection is closed.
MAX_RESPONSE_BYTES = 64 * 1024


# The one text of every attempt that reached no receiver, whatever the cause (a refused target,
# a name that does not resolve, a closed port, a timeout, an answer that is not HTTP): the logs
# must not tell an open internal port from a closed one.
UNREACHABLE = "the webhook receiver could not be reached, or its address is not allowed"


@dataclass(frozen=True)
class Attempt:
    ok: bool
    detail: str  # "HTTP 200", "HTTP 503", or UNREACHABLE
    refused: str | None = None  # why the policy refused the target (logged once, not per try)


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float, *,
         policy: EgressPolicy | None = None, resolver: Resolver = system_resolver,
         tls: ssl.SSLContext | None = None) -> Attempt:
    """One POST with the standard library (no HTTP client library in the worker's memory), to
    an address `policy` allows (the default policy: public addresses only). The connection is
    made here to the address that was checked; http.client only speaks HTTP over it, with the
    URL's host in the Host header and, for https, as the TLS server name the certificate is
    verified against. Redirects are not followed: a receiver must answer at the URL it was
    given."""
    try:
        target, addresses = checked(url, policy or EgressPolicy(), resolver)
    except Refused as exc:
        return Attempt(False, UNREACHABLE, refused=str(exc))
    except (OSError, UnicodeError, ValueError):
        return Attempt(False, UNREACHABLE)
    try:
        with connection(target, addresses, timeout_s, tls) as conn:
            conn.request("POST", target.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(MAX_RESPONSE_BYTES)
            return Attempt(200 <= resp.status < 300, f"HTTP {resp.status}")
    except Exception:
        return Attempt(False, UNREACHABLE)


Poster = Callable[[str, bytes, dict[str, str], float], Attempt]
