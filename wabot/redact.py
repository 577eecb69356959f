"""The one place that decides what of a secret-bearing string may be shown (issue 21).

A DSN, a proxy URL or a webhook URL reaches the worker from a Secret, and the bot's logs are
readable by the tenant: whatever a log line prints of such a string is printed for anyone who
can read the pod's logs. So every log line, status and error text that mentions one goes
through here, and the rule is the same everywhere: what is recognised is shown without its
secret parts (password, secret-looking query parameters, a URL's user name unless it is a
database role); what is not recognised, or is ambiguous, is replaced *whole* (`REDACTED`). A
Secret named by mistake (or on purpose) as a DSN therefore never shows up in a log.

Text that may contain a secret's value in some other shape (a driver's error message, a Go
error, a traceback) is scrubbed with `scrub` and the values `secrets_of` finds in the secret:
the value itself, its password (as written and percent-decoded), secret query values. A
process can also register its secrets once (`KNOWN.add`); the JSON log formatter
(wabot/logs.py) scrubs every line against them as a last line of defence.

Standard library only: the worker, the fleet tiers, the gateway and the operator import it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus, urlsplit

MASK = "***"
REDACTED = "<redacted>"

Kind = Literal["dsn", "url", "opaque"]

# Database URL schemes, with an optional SQLAlchemy driver (`postgresql+psycopg`).
_DB_SCHEME = re.compile(
    r"(?:postgres|postgresql|sqlite|mysql|mariadb|cockroachdb|mssql|oracle)(?:\+[a-z0-9_]+)?",
    re.IGNORECASE)
_URL_START = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# host[:port], a bracketed IPv6 address, a percent-encoded socket directory, or nothing; a
# libpq URL may list several, comma-separated.
_HOSTPORT = r"(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9._~%-]*)(?::[0-9]{0,5})?"
_HOSTS = re.compile(rf"{_HOSTPORT}(?:,{_HOSTPORT})*")
_ROLE = re.compile(r"[A-Za-z0-9._%-]{1,128}")
# libpq's connection keywords (PostgreSQL 18): a key=value string with any other word is not a
# conninfo string, and is redacted whole.
_CONNINFO_KEYWORDS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
    "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode",
    "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
    "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service",
    "target_session_attrs", "load_balance_hosts", "scram_client_key", "scram_server_key",
    "oauth_issuer", "oauth_client_id", "oauth_client_secret", "oauth_scope"
})
_SECRET_WORDS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey", "sig",
    "signature", "auth", "authorization", "credential", "credentials", "code", "session",
    "sessionid", "jwt", "bearer", "accesskey", "cookie", "private",
})
_SECRET_PARTS = ("password", "secret", "token", "passwd", "apikey", "credential")
_MIN_SCRUB = 3  # shorter secrets cannot be replaced inside text without mangling it


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or conninfo keyword of this name carries a secret."""
    low = name.lower()
    if any(part in low for part in _SECRET_PARTS):
        return True
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", low))


def _clean(text: str) -> bool:
    return not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text)


# --- URLs -----------------------------------------------------------------------------------


class _Url:
    """A URL split the way redaction needs it, or None from `parse` when it is ambiguous:
    whitespace or control characters, an '@' outside the authority (an unencoded '/', '?' or
    '#' in a password moves the rest of it there), or an authority that is not host[:port]."""

    def __init__(self, scheme: str, userinfo: str | None, hosts: str, path: str,
                 query: str) -> None:
        self.scheme, self.userinfo, self.hosts = scheme, userinfo, hosts
        self.path, self.query = path, query

    @classmethod
    def parse(cls, text: str) -> _Url | None:
        if not _URL_START.match(text) or not _clean(text):
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            return None
        if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
            return None
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if not _HOSTS.fullmatch(hosts):
            return None
        return cls(parts.scheme, userinfo if at else None, hosts, parts.path, parts.query)

    @property
    def user(self) -> str:
        return (self.userinfo or "").partition(":")[0]

    @property
    def password(self) -> str | None:
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return self.userinfo.partition(":")[2]

    def query_pairs(self) -> list[tuple[str, str, str]]:
        """(piece as written, decoded name, value as written) for each `&`-separated piece."""
        out = []
        for piece in self.query.split("&") if self.query else []:
            name, _, value = piece.partition("=")
            out.append((piece, unquote_plus(name), value))
        return out

    def render(self, *, keep_user: bool) -> str:
        if self.userinfo is None:
            auth = ""
        elif keep_user and _ROLE.fullmatch(self.user):
            auth = self.user + (f":{MASK}" if self.password is not None else "") + "@"
        else:
            auth = f"{MASK}@"
        query = "&".join(f"{piece.partition('=')[0]}={MASK}" if is_secret_name(name) else piece
                         for piece, name, _ in self.query_pairs())
        return f"{self.scheme}://{auth}{self.hosts}{self.path}" + (f"?{query}" if query else "")


def redact_url(url: str) -> str:
    """A URL (proxy, webhook, any with credentials) safe to log: no user name, no password,
    secret-looking query values masked, no fragment. Anything else: `REDACTED`."""
    parsed = _Url.parse(url.strip())
    return REDACTED if parsed is None else parsed.render(keep_user=False)


def url_origin(url: str) -> str:
    """Only scheme://host[:port] of a URL (a webhook's path may itself be a token, as in
    Slack's); `REDACTED` when it cannot be told apart from the rest."""
    parsed = _Url.parse(url.strip())
    if parsed is None:
        return REDACTED
    return f"{parsed.scheme}://{parsed.hosts}"


# --- DSNs -----------------------------------------------------------------------------------


def _conninfo(text: str) -> list[tuple[str, str, str]] | None:
    """libpq's `key=value ...` form as (keyword, value as written, value unescaped), following
    libpq's rules (blanks around '=', single quotes, backslash escapes); None when `text` is
    not such a string or names a keyword libpq does not know."""
    out: list[tuple[str, str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        keyword = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=" or keyword not in _CONNINFO_KEYWORDS:
            return None
        i += 1
        while i < n and text[i].isspace():
            i += 1
        vstart, value = i, []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    return None  # an unterminated quote
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                else:
                    value.append(text[i])
                    i += 1
        out.append((keyword, text[vstart:i], "".join(value)))
    return out or None


def redact_dsn(dsn: str) -> str:
    """A DSN safe to log: a database URL (SQLAlchemy's too) without its password and secret
    query values (`?password=`, `?sslpassword=`), or libpq's `key=value` form with those values
    masked; the user, hosts, database and options stay for debugging. Anything not recognised
    as either (a token, a typo, another Secret's value) is replaced whole."""
    text = dsn.strip()
    if not text:
        return ""
    start = _URL_START.match(text)
    if start is not None:
        parsed = _Url.parse(text) if _DB_SCHEME.fullmatch(start.group(1)) else None
        return REDACTED if parsed is None else parsed.render(keep_user=True)
    pairs = _conninfo(text)
    if pairs is None:
        return REDACTED
    return " ".join(f"{k}={MASK}" if is_secret_name(k) else f"{k}={raw}" for k, raw, _ in pairs)


# --- scrubbing text -------------------------------------------------------------------------


def secrets_of(value: str, kind: Kind = "dsn") -> tuple[str, ...]:
    """The strings to scrub from text for one secret-bearing value: the value itself and, for
    a DSN or URL, its password and secret query values as written and decoded (a URL's user
    name too: in a proxy or webhook URL it may be the credential). A DSN that `redact_dsn`
    cannot read adds its words as well, since an error message may quote just a piece. A DSN
    or URL with nothing to hide gives none (it stays readable wherever it is quoted)."""
    text = value.strip()
    if kind != "opaque" and (redact_dsn if kind == "dsn" else redact_url)(text) == text:
        return ()  # nothing in it to hide (`sqlite:///...`, a DSN without a password)
    found: set[str] = {value, text}
    if kind != "opaque":
        start = _URL_START.match(text)
        readable = start is not None and (kind == "url" or _DB_SCHEME.fullmatch(start.group(1)))
        parsed = _Url.parse(text) if readable else None
        pairs = _conninfo(text) if start is None else None
        if parsed is not None:
            if parsed.password is not None:
                found |= {parsed.password, unquote(parsed.password), parsed.userinfo or ""}
            if kind == "url" and parsed.user:
                found |= {parsed.user, unquote(parsed.user), parsed.userinfo or ""}
            for _, name, raw in parsed.query_pairs():
                if is_secret_name(name):
                    found |= {raw, unquote_plus(raw)}
        elif pairs is not None:
            for keyword, raw, unescaped in pairs:
                if is_secret_name(keyword):
                    found |= {raw, unescaped}
        else:
            found |= {w for w in re.split(r"[\s/:@?#&=;,'\"]+", text) if len(w) >= 4}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by `MASK`, longest first. A secret
    too short to replace safely that still occurs in `text` makes the whole text `REDACTED`."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if not secret or secret not in text:
            continue
        if len(secret) < _MIN_SCRUB:
            return REDACTED
        text = text.replace(secret, MASK)
    return text


class KnownSecrets:
    """The secrets one process holds, registered once at start-up, so that anything it logs
    can be scrubbed of them whatever shape the log line has (a traceback, a library's message).
    Only a safety net: call sites still redact what they print."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, value: str | None, kind: Kind = "opaque") -> None:
        if not value or not value.strip():
            return
        with self._lock:
            merged = set(self._values) | {s for s in secrets_of(value, kind)
                                          if len(s) >= _MIN_SCRUB}
            self._values = tuple(sorted(merged, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._values)

    def scrub(self, text: str) -> str:
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def scrub_fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A log record's fields with every string (nested ones too) scrubbed."""
        return {k: self._scrub_value(v) for k, v in fields.items()}

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {k: self._scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub_value(v) for v in value]
        if value is None or isinstance(value, int | float):
            return value
        return self.scrub(str(value))  # what json.dumps(default=str) would print


KNOWN = KnownSecrets()
