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

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationError

# The checks themselves, pydantic-free for the worker; importable from here as before.
from wabot.envcheck import (
    DSN_EXPECTED,
    LOG_LEVELS,
    ConfigError,
    check_dsn,
    listen_host,
    normalize_level,
)

__all__ = ["DSN_EXPECTED", "LOG_LEVELS", "ConfigError", "Dsn", "ListenHost", "LogLevel",
           "check_dsn", "first_problem", "listen_host", "normalize_level"]


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(normalize_level)]
ListenHost = Annotated[str, AfterValidator(listen_host)]


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
