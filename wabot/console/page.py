"""What every console's HTTP side sends the same way: the security headers, the static files
and the same-origin check of a state-changing request. Each tier serves them with its own
server (the gateway's aiohttp, the fleet's standard-library kit)."""

from __future__ import annotations

import time
from importlib import resources
from urllib.parse import urlsplit

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# Added to every /console answer, errors included.
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# The files a page may load, with their types; nothing else is served from static/.
STATIC = {"console.js": "text/javascript", "bot.js": "text/javascript",
          "poll.js": "text/javascript", "console.css": "text/css",
          "favicon.svg": "image/svg+xml"}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def asset(name: str) -> bytes:
    """A file of static/ (the shell, console.html, included)."""
    return resources.files("wabot.console").joinpath("static", name).read_bytes()


def same_origin(origin: str | None, host: str) -> bool:
    """A state-changing request must come from a page of this origin (the sign-in too, which
    has no session yet for SameSite to protect): its Origin (or Referer) names our host."""
    return bool(origin) and urlsplit(origin).netloc == host


def loopback(host: str) -> bool:
    """Reached on this machine: a cookie may go without Secure (plain HTTP to localhost)."""
    return host.rsplit(":", 1)[0] in LOOPBACK_HOSTS


class Failures:
    """Failed sign-ins per client address: more than LIMIT in WINDOW_S and it must wait (each
    attempt costs a TokenReview or a key lookup). Behind an Ingress every client shares its
    address: the limit is generous for that."""

    LIMIT = 20
    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._seen: dict[str, list[float]] = {}

    def _recent(self, remote: str) -> list[float]:
        cutoff = time.monotonic() - self.WINDOW_S
        recent = [t for t in self._seen.get(remote, ()) if t > cutoff]
        if recent:
            self._seen[remote] = recent
        else:
            self._seen.pop(remote, None)
        return recent

    def blocked(self, remote: str) -> bool:
        return len(self._recent(remote)) >= self.LIMIT

    def add(self, remote: str) -> None:
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen.setdefault(remote, []).append(time.monotonic())
