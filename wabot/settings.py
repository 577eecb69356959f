"""What every role does with its environment: each setting is checked before anything starts,
and a bad one is reported as one line naming the variable (exit code 2), never a traceback.

A wrong setting is fixed by whoever deploys the process, usually from `kubectl logs` of a pod
in CrashLoopBackOff or a `docker compose` log: a stack trace there hides the one line that
matters, and a value that is only checked where it is first used (a log level given to
`logging`, a DSN given to SQLAlchemy) fails with the library's words, not the variable's name.
So each role turns its environment into a validated config first (botworker.config,
fleet.monolith, fleet.controller, gateway.config, wabot_operator.config), the types below are
the checks they share, and `wabot_cli` reports a `ConfigError` that escapes a role as one line.

Messages say what is expected, never what was given when the value can be a secret (DSNs,
tokens, proxy URLs, signing keys).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationError


class ConfigError(ValueError):
    """A setting a restart cannot fix. The message is folded to one line, for humans."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# What `logging` accepts by name, with its two aliases; anything else was a ValueError from
# deep inside the logging setup (issue 22).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def _level(value: object) -> object:
    if isinstance(value, str):
        upper = value.strip().upper()
        return _LEVEL_ALIASES.get(upper, upper)
    return value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(_level)]


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


ListenHost = Annotated[str, AfterValidator(listen_host)]


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


def _dsn(value: SecretStr) -> SecretStr:
    check_dsn(value.get_secret_value())
    return value


Dsn = Annotated[SecretStr, AfterValidator(_dsn)]


# --- pydantic's errors, as the variables' names ---------------------------------------------


def first_problem(exc: ValidationError, names: Mapping[str, str], prefix: str = "") -> str:
    """`VARIABLE: what is wrong` for the first error, the field named as its variable. The
    input is left out (pydantic's `msg` never quotes it), so a secret's value is not shown."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    name = names.get(field) or (prefix + field.upper() if field else "configuration")
    msg = err["msg"].removeprefix("Value error, ")
    return f"{name}: {msg}"
