"""spec.proxy: the URL the WhatsApp connection goes through, checked before it reaches neonize.

whatsmeow accepts http://, https:// and socks5:// proxies (with optional user:password@). A URL
it cannot use must not be handed over: the Go side would either fail obscurely at every dial or,
worse, a typo could make the bot connect *without* the proxy, from the address the proxy exists
to hide. So a bad URL stops the session altogether and is reported (status.worker.lastError,
errorReason InvalidProxy), and nothing here ever puts the credentials, or the raw URL they are
part of, into a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from wabot.redact import scrub, secrets_of

SCHEMES = ("http", "https", "socks5")
INVALID_PROXY = "InvalidProxy"


@dataclass(frozen=True)
class ProxyUrl:
    url: str  # the whole URL, credentials included: only ever given to neonize
    scheme: str
    host: str
    port: int
    has_credentials: bool
    secrets: tuple[str, ...] = ()  # the URL, user and password as written: scrubbed from text

    @property
    def display(self) -> str:
        """Safe to log: no user name, no password."""
        creds = "***@" if self.has_credentials else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{creds}{host}:{self.port}"

    def scrub(self, text: str) -> str:
        """`text` (say, an error from the Go side) without any part of the credentials."""
        return scrub(text, self.secrets)


class InvalidProxyUrl(ValueError):
    """The message names what is wrong without repeating the URL."""


_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080}


def parse_proxy_url(raw: str) -> ProxyUrl:
    raw = raw.strip()
    try:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise InvalidProxyUrl("the proxy URL cannot be parsed (check the host and port)") from None
    if not scheme or "://" not in raw:
        raise InvalidProxyUrl("the proxy URL has no scheme; use http://, https:// or socks5://")
    if scheme not in SCHEMES:
        shown = scheme if scheme.isascii() and scheme.isalnum() and len(scheme) < 16 else "?"
        raise InvalidProxyUrl(
            f"unsupported proxy scheme {shown!r}; use http://, https:// or socks5://"
        )
    if not host:
        raise InvalidProxyUrl("the proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxyUrl("the proxy URL must be scheme://[user:password@]host[:port] only")
    if any(c.isspace() for c in raw):
        raise InvalidProxyUrl("the proxy URL contains whitespace")
    return ProxyUrl(
        url=raw,
        scheme=scheme,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        has_credentials=parts.username is not None,
        secrets=secrets_of(raw, "url") + tuple(
            x for x in (parts.username, parts.password, parts.netloc.rpartition("@")[0]) if x),
    )
