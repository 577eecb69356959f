"""The environment checks every role shares, without pydantic: the worker checks its settings
with these alone (botworker/config.py; an idle bot does not load pydantic, bench/
PROFILE-density.md), the other roles through wabot/settings.py's annotated types built on them.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting a restart cannot fix. The message is folded to one line, for humans."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# What `logging` accepts by name, with its two aliases; anything else was a ValueError from
# deep inside the logging setup (issue 22).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def normalize_level(value: object) -> object:
    if isinstance(value, str):
        upper = value.strip().upper()
        return _LEVEL_ALIASES.get(upper, upper)
    return value


# --- listen addresses ---------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def listen_host(value: str) -> str:
    """An IP address or a host name, as a socket can bind to it. A name whose last label is
    all digits is no name (RFC 3696) but a mistyped address: `999.1.1.1`, `10.0.0`."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(value) and not value.rstrip(".").rsplit(".", 1)[-1].isdigit():
        return value
    raise ValueError("not an IP address or host name (e.g. 0.0.0.0, 127.0.0.1, ::)")


# --- database URLs --------------------------------------------------------------------------

# What the image can connect to: PostgreSQL through psycopg 3 (botworker.data.db.normalize_url
# maps postgres:// and postgresql:// to it) and SQLite.
_DSN_SCHEMES = frozenset({"postgres", "postgresql", "postgresql+psycopg", "sqlite",
                          "sqlite+pysqlite"})
DSN_EXPECTED = ("a postgresql://USER:PASSWORD@HOST[:PORT]/DB or sqlite:///PATH URL "
                "(the value is not shown: it may hold a password)")


def check_dsn(value: str) -> str:
    """A database URL SQLAlchemy will parse the way the roles use it, checked with the
    standard library (the worker checks its settings before importing SQLAlchemy). The error
    never quotes the value."""
    scheme, sep, _ = value.partition("://")
    if not sep or scheme not in _DSN_SCHEMES:
        raise ValueError(f"not {DSN_EXPECTED}")
    try:
        urlsplit(value).port  # noqa: B018 - raises on a port that is not a number 0-65535
    except ValueError:
        raise ValueError(f"its port is not a number 0-65535; expected {DSN_EXPECTED}") from None
    return value
