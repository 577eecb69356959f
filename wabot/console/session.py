"""Console sessions: a signed cookie, checked on every request, and the CSRF token of each action.

Stateless on purpose, like the rest of the gateway: the cookie carries who signed in and until
when, signed with a key derived from the shared secret (`WABOT_GATEWAY_CONSOLE_SECRET`, one
Secret for every replica), so any replica accepts a cookie another one issued and a restart
signs nobody out. The cookie never holds a credential: a tenant's holds its tenant and a prefix
of its key's hash (so a deleted key ends the session at once), a cluster user's the identity
TokenReview returned (never the bearer token).

The CSRF token is derived from the session's random id with a second key: a page reads it from
/console/api/me (JavaScript on this origin only, as the CSP allows) and sends it in
`X-CSRF-Token` with each action. A forged request from another site has neither the cookie
(SameSite=Strict) nor the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

COOKIE = "wabot_console"
CSRF_HEADER = "X-CSRF-Token"
MIN_SECRET = 32


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a tenant (by API key) or a cluster user (by Kubernetes token)."""

    kind: Literal["tenant", "user"]
    name: str  # the tenant, or the user's name from TokenReview
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)
    key_hash: str = ""  # tenants: the first 32 hex digits of their key's SHA-256
    sid: str = ""
    expires: float = 0.0

    def describe(self) -> str:
        """Who did it, as an Event names them (never the credential)."""
        if self.kind == "tenant":
            return f"tenant {self.name} (API key)"
        return f"user {self.name}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Issues and checks session cookies and CSRF tokens from one shared secret."""

    def __init__(self, secret: str, lifetime_s: float) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"the console secret must be at least {MIN_SECRET} characters")
        root = secret.encode()
        self._session_key = hmac.new(root, b"wabot-console-session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(root, b"wabot-console-csrf", hashlib.sha256).digest()
        self.lifetime_s = lifetime_s

    def issue(self, viewer: Viewer, now: float | None = None) -> tuple[str, Viewer]:
        now = time.time() if now is None else now
        signed = Viewer(viewer.kind, viewer.name, viewer.groups, viewer.uid, viewer.extra,
                        viewer.key_hash, secrets.token_urlsafe(16), now + self.lifetime_s)
        payload = asdict(signed)
        payload["groups"] = list(signed.groups)
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self._session_key, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}", signed

    def check(self, cookie: str | None, now: float | None = None) -> Viewer | None:
        """The viewer a cookie names, or None when it is missing, forged, altered or old."""
        if not cookie or len(cookie) > 8192 or "." not in cookie:
            return None
        body, _, mac = cookie.rpartition(".")
        want = hmac.new(self._session_key, body.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), want):
                return None
            raw: dict[str, Any] = json.loads(_unb64(body))
            viewer = Viewer(kind=raw["kind"], name=str(raw["name"]),
                            groups=tuple(str(g) for g in raw.get("groups", ())),
                            uid=str(raw.get("uid", "")), extra=dict(raw.get("extra") or {}),
                            key_hash=str(raw.get("key_hash", "")), sid=str(raw["sid"]),
                            expires=float(raw["expires"]))
        except (ValueError, KeyError, TypeError):
            return None
        if viewer.kind not in ("tenant", "user"):
            return None
        if viewer.expires <= (time.time() if now is None else now):
            return None
        return viewer

    def csrf(self, viewer: Viewer) -> str:
        return _b64(hmac.new(self._csrf_key, viewer.sid.encode(), hashlib.sha256).digest())

    def csrf_ok(self, viewer: Viewer, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            (presented or "").encode(), self.csrf(viewer).encode())
