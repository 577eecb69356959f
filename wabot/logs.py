"""One JSON log line format for every wabot process that is not the operator (kopf has its own).

A fleet's logs are read by machines first (Loki, Elasticsearch) and filtered by bot and tenant,
so the fields a process knows about itself (bot, server_name, role, group) are stamped on every
record by the handler, not remembered by each call site. Records from a supervisor about a bot
pass the same fields as `extra`, and those win over the process's own.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from .redact import KNOWN, KnownSecrets

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Renders a record as one JSON line; `extra={...}` keys become top-level fields. Every
    string in it is scrubbed of the secrets the process registered (wabot.redact)."""

    def __init__(self, secrets: KnownSecrets = KNOWN) -> None:
        super().__init__()
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if self._secrets:
            out = self._secrets.scrub_fields(out)
        return json.dumps(out, default=str, ensure_ascii=False)


class StaticFields(logging.Filter):
    """Stamps fixed fields on every record that does not already carry them."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self._fields = dict(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self._fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def install_json_handler(level: str, fields: dict[str, str],
                         stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one JSON handler on `stream` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(StaticFields(fields))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
