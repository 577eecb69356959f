"""Structured logs: one JSON object per line on stderr, every line tagged with bot and tenant.

A fleet's logs are read by machines first (Loki, Elasticsearch) and filtered by bot and tenant,
so those two fields are added to every record here, not remembered by each call site. neonize
calls `logging.basicConfig` on import; configuring the root logger before neonize is imported
makes that call a no-op, so whatsmeow's records come out in the same format.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Renders a record as one JSON line; `extra={...}` keys become top-level fields."""

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
        return json.dumps(out, default=str, ensure_ascii=False)


class BotFields(logging.Filter):
    """Stamps bot and server_name on every record that passes through the handler."""

    def __init__(self, bot: str, server_name: str) -> None:
        super().__init__()
        self.bot = bot
        self.server_name = server_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.bot = self.bot
        record.server_name = self.server_name
        return True


def configure_logging(
    bot: str, server_name: str, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Install the JSON handler on the root logger (replacing any earlier one).

    whatsmeow is chatty at INFO (every keep-alive); its loggers get WARNING unless the worker
    itself runs at DEBUG.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(BotFields(bot, server_name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("whatsmeow", "Whatsmeow", "neonize", "kubernetes", "urllib3", "alembic"):
        logging.getLogger(name).setLevel(quiet)
    # neonize hands this logger's *own* level (not the effective one) to whatsmeow at
    # connect(); left at NOTSET, Go would forward every debug line across the FFI.
    logging.getLogger("neonize.utils.log").setLevel(quiet)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"wabot.worker.{name}")
