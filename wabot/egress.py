"""Where a webhook delivery may go: the decision, apart from any I/O but the one DNS lookup.

spec.webhook.url is written by the tenant, and the worker runs inside the cluster with a
ServiceAccount token, next to the API server, the cloud's metadata endpoint and every other
tenant's pods. A URL pointing there would make the bot a proxy into them (issue 21, finding 5).
So a URL is checked before any connection is made:

- it must be http(s) with a host written plainly: a numeric host in any other shape than a
  dotted quad (`0x7f000001`, `2130706433`, `0177.0.0.1`, `127.1`, which the C resolver reads as
  127.0.0.1) is refused outright;
- the host is resolved once, here, and every address it resolves to is checked; the worker then
  connects to one of *those* addresses (webhooks.py), never resolving the name again, so a DNS
  answer that changes between the check and the connection (rebinding) cannot move it;
- refused by default: loopback, link-local, private (RFC 1918, fc00::/7), shared 100.64.0.0/10,
  and every other range that is not globally routable, IPv4 addresses inside IPv6 ones
  (::ffff:a.b.c.d and the like) by the address inside. A cluster's service and pod ranges are
  private ranges in practice; `deny` (WABOT_WEBHOOK_DENY_CIDRS) adds any that are not;
- `allow` (WABOT_WEBHOOK_ALLOW_CIDRS) and `allow_hosts` (WABOT_WEBHOOK_ALLOW_HOSTS) are the
  admin's exceptions for receivers inside the cluster. Never allowed, whatever the lists say:
  the metadata endpoints, unspecified, broadcast and multicast addresses.

The reason a target is refused (a `Refused`) names the kind of address only, never an address
or a port: it is logged once for the admin, while every delivery attempt that fails, refused or
unreachable alike, reports the same text (webhooks.UNREACHABLE).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from wabot.workerenv import ALLOW_CIDRS_ENV, ALLOW_HOSTS_ENV, DENY_CIDRS_ENV

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses (as text) the host resolves to; raises OSError when it does not.
Resolver = Callable[[str, int], Sequence[str]]


_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
                       r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?")


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Refused even when an allow-list covers them. 169.254.170.2: ECS task metadata;
# 100.100.100.200: Alibaba Cloud's; fd00:ec2::254: EC2's over IPv6.
_NEVER: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("a cloud metadata", _nets("169.254.169.254/32", "169.254.170.2/32",
                               "100.100.100.200/32", "fd00:ec2::254/128")),
    ("an unspecified", _nets("0.0.0.0/8", "::/128")),
    ("a broadcast", _nets("255.255.255.255/32")),
    ("a multicast", _nets("224.0.0.0/4", "ff00::/8")),
)
# Refused unless allow-listed. The last resort is `not is_global` (and IPv6's reserved space).
_DEFAULT_DENY: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("a loopback", _nets("127.0.0.0/8", "::1/128")),
    ("a link-local", _nets("169.254.0.0/16", "fe80::/10")),
    ("a private", _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
                        "fec0::/10")),
    ("a shared (carrier-grade NAT)", _nets("100.64.0.0/10")),
    ("a documentation", _nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                              "2001:db8::/32")),
    ("a reserved", _nets("192.0.0.0/24", "198.18.0.0/15", "192.88.99.0/24", "240.0.0.0/4",
                         "100::/64", "2001::/23", "64:ff9b:1::/48")),
)
# IPv6 forms that carry an IPv4 address the traffic ends up at (NAT64, 6to4), decided by it.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_COMPAT = ipaddress.ip_network("::/96")


class Refused(Exception):
    """A target the policy does not let the worker connect to. The message says why in terms
    of the kind of address (safe to log: no address, no port)."""


@dataclass(frozen=True)
class Target:
    """A webhook URL, split into what the connection needs."""

    scheme: str
    host: str  # as the URL names it (lower case, IDNA-encoded): the Host header and TLS name
    port: int
    path: str  # path and query, as sent in the request line
    literal: IPAddress | None  # the host, when it is an IP address


@dataclass(frozen=True)
class EgressPolicy:
    """The admin's exceptions to the default; empty: nothing internal is reachable."""

    allow: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    deny: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, allow_cidrs: str = "", allow_hosts: str = "",
              deny_cidrs: str = "") -> EgressPolicy:
        """From the comma-separated settings; ValueError names the variable and the entry."""
        hosts = set()
        for entry in _entries(allow_hosts):
            name = _normalise_host(entry)
            if name is None or _numeric_ipv4(name):
                raise ValueError(f"{ALLOW_HOSTS_ENV}: {entry!r} is not a host name "
                                 f"(addresses go in {ALLOW_CIDRS_ENV})")
            hosts.add(name.rstrip("."))
        return cls(allow=_parse_cidrs(ALLOW_CIDRS_ENV, allow_cidrs),
                   allow_hosts=frozenset(hosts),
                   deny=_parse_cidrs(DENY_CIDRS_ENV, deny_cidrs))

    def describe(self) -> dict[str, list[str]]:
        """For the start-up log line: the admin's lists (nothing of any target)."""
        return {"allow": [str(n) for n in self.allow], "allow_hosts": sorted(self.allow_hosts),
                "deny": [str(n) for n in self.deny]}


def _entries(raw: str) -> list[str]:
    return [e.strip() for e in raw.split(",") if e.strip()]


def _parse_cidrs(env: str, raw: str) -> tuple[IPNetwork, ...]:
    out = []
    for entry in _entries(raw):
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{env}: {entry!r} is not an address or CIDR "
                             "(e.g. 10.20.0.0/16, fd00::/8)") from None
    return tuple(out)


def _normalise_host(host: str) -> str | None:
    """The host as DNS sees it (lower case, IDNA for non-ASCII), or None when it is not a
    plausible host name (blanks, control characters, '%', '/'...)."""
    host = host.strip().lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host if _HOSTNAME.fullmatch(host) else None


def _numeric_ipv4(host: str) -> bool:
    """Whether the C library would read `host` as an IPv4 address (inet_aton: hex, octal,
    a single number, fewer than four parts), as getaddrinfo does before asking DNS."""
    try:
        socket.inet_aton(host.rstrip("."))
    except (OSError, ValueError):
        return False
    return True


def parse_target(url: str) -> Target:
    """Split a webhook URL; Refused for any URL the worker will not try."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        raw_host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise Refused("the URL cannot be parsed (check the host and port)") from None
    if scheme not in _DEFAULT_PORTS:
        raise Refused("the URL's scheme is not http or https")
    if not raw_host:
        raise Refused("the URL has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c.isspace() or ord(c) < 32 for c in path):
        raise Refused("the URL's path contains blanks or control characters")
    literal: IPAddress | None = None
    try:
        literal = ipaddress.ip_address(raw_host)
        host = raw_host
    except ValueError:
        normalised = _normalise_host(raw_host)
        if normalised is None:
            raise Refused("the URL's host is not a valid host name") from None
        if _numeric_ipv4(normalised):
            raise Refused("the URL's host is a number in a form other than a dotted quad "
                          "(write IPv4 addresses as a.b.c.d)") from None
        host = normalised
    return Target(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme], path,
                  literal)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64 or (addr in _COMPAT and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    return None


def _kind(addr: IPAddress, table: Iterable[tuple[str, tuple[IPNetwork, ...]]]) -> str | None:
    for kind, nets in table:
        if any(addr.version == n.version and addr in n for n in nets):
            return kind
    return None


def _default_kind(addr: IPAddress) -> str | None:
    kind = _kind(addr, _DEFAULT_DENY)
    if kind is None and (not addr.is_global or addr.is_reserved):
        kind = "a reserved (not globally routable)"
    return kind


def _in(addr: IPAddress, nets: Iterable[IPNetwork]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def refusal(addr: IPAddress, policy: EgressPolicy, *, host_allowed: bool = False) -> str | None:
    """Why the policy refuses `addr` (the kind of address), or None when it is allowed."""
    inner: IPAddress | None = None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            addr = ipaddress.IPv6Address(addr.compressed.split("%", 1)[0])
        inner = _embedded_ipv4(addr)
        if inner is not None and addr.ipv4_mapped is not None:
            addr, inner = inner, None  # ::ffff:a.b.c.d is a.b.c.d to a dual-stack socket
    candidates = [addr] if inner is None else [addr, inner]
    for a in candidates:
        kind = _kind(a, _NEVER)
        if kind is not None:
            return f"{kind} address (never allowed)"
    if any(_in(a, policy.deny) for a in candidates):
        return f"an address in {DENY_CIDRS_ENV}"
    if host_allowed or any(_in(a, policy.allow) for a in candidates):
        return None
    if inner is not None:
        kind = _default_kind(inner)
        if kind is None and (addr in _NAT64 or addr in _SIX_TO_FOUR):
            return None  # NAT64/6to4 to a public IPv4 address (DNS64 in IPv6-only clusters)
        if kind is not None:
            return f"{kind} address (inside an IPv6 address)"
    kind = _default_kind(addr)
    return None if kind is None else f"{kind} address"


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for `host`, in its order, without repeats."""
    seen: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


def allowed_addresses(target: Target, policy: EgressPolicy,
                      resolver: Resolver = system_resolver) -> list[IPAddress]:
    """The addresses the worker may connect to for `target`, resolved once, in the resolver's
    order. Refused when none is allowed; OSError when the name does not resolve."""
    if target.literal is not None:
        reason = refusal(target.literal, policy)
        if reason is not None:
            raise Refused(f"the URL's host is {reason}")
        return [target.literal]
    host_allowed = target.host.rstrip(".") in policy.allow_hosts
    addresses: list[IPAddress] = []
    for text in resolver(target.host, target.port):
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:
            continue
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    allowed: list[IPAddress] = []
    reasons = []
    for addr in addresses:
        reason = refusal(addr, policy, host_allowed=host_allowed)
        if reason is None:
            allowed.append(addr)
        else:
            reasons.append(reason)
    if not allowed:
        raise Refused(f"the URL's host resolves to {reasons[0]}")
    return allowed


def check(url: str, policy: EgressPolicy, resolver: Resolver = system_resolver) -> str | None:
    """Why the policy refuses `url` right now (for the log at start-up), or None. A name that
    does not resolve is not a policy matter: None too (the deliveries will say unreachable)."""
    try:
        allowed_addresses(parse_target(url), policy, resolver)
    except Refused as exc:
        return str(exc)
    except (OSError, UnicodeError, ValueError):
        return None
    return None
