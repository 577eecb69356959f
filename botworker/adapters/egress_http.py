"""The HTTP connection to a URL a tenant names (a webhook receiver, a media file to send):
made only to an address the egress policy checked (issue 21, finding 5).

wabot/egress.py resolves the host once and checks every address; the connection is opened here
to one of those addresses, so a name cannot resolve to another address between the check and
the connect. http.client only speaks HTTP over the socket it is given, with the URL's host in
the Host header and, for https, as the TLS server name the certificate is verified against.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from wabot.egress import EgressPolicy, IPAddress, Resolver, Target, allowed_addresses, parse_target


def checked(url: str, policy: EgressPolicy,
            resolver: Resolver) -> tuple[Target, list[IPAddress]]:
    """`url` split, and the addresses the policy lets the worker connect to for it. Raises
    Refused when it allows none, OSError when the name does not resolve, UnicodeError or
    ValueError for a URL that is not one."""
    target = parse_target(url)
    return target, allowed_addresses(target, policy, resolver)


def _dial(addresses: Sequence[IPAddress], port: int, timeout_s: float) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout=timeout_s)
        except OSError as exc:
            error = exc
    raise error


@contextmanager
def connection(target: Target, addresses: Sequence[IPAddress], timeout_s: float,
               tls: ssl.SSLContext | None = None) -> Iterator[http.client.HTTPConnection]:
    """An HTTP(S) connection to `target` over a socket to one of `addresses` (those the policy
    allowed for it), closed on leaving. Raises OSError (or ssl.SSLError) when none answers."""
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        context = tls or ssl.create_default_context()
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout_s,
                                           context=context)
    else:
        context = None
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout_s)
    try:
        conn.sock = sock = _dial(addresses, target.port, timeout_s)
        if context is not None:
            conn.sock = context.wrap_socket(sock, server_hostname=target.host.rstrip("."))
        yield conn
    finally:
        conn.close()
