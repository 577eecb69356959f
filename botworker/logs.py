"""Structured logs: one JSON object per line on stderr, every line tagged with bot and tenant.

A fleet's logs are read by machines first (Loki, Elasticsearch) and filtered by bot and tenant,
so those two fields are added to every record here, not remembered by each call site. neonize
calls `logging.basicConfig` on import; configuring the root logger before neonize is imported
makes that call a no-op, so whatsmeow's records come out in the same format.
"""

from __future__ import annotations

import logging
from typing import TextIO

from wabot.logs import install_json_handler


class WithholdObjects(logging.Filter):
    """neonize sometimes logs a whole protobuf (when it cannot build a quoted reply it logs the
    message being quoted): that is a user's message text in the log. Records whose message is
    not a string are rewritten to name the type only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            record.msg = f"<{type(record.msg).__name__} withheld: message content is not logged>"
            record.args = None
        return True


def configure_logging(
    bot: str, server_name: str, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Install the JSON handler on the root logger (replacing any earlier one).

    whatsmeow is chatty at INFO (every keep-alive); its loggers get WARNING unless the worker
    itself runs at DEBUG.
    """
    install_json_handler(level, {"bot": bot, "server_name": server_name}, stream)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("whatsmeow", "Whatsmeow", "neonize", "kubernetes", "urllib3", "alembic"):
        logging.getLogger(name).setLevel(quiet)
    # neonize hands this logger's *own* level (not the effective one) to whatsmeow at
    # connect(); left at NOTSET, Go would forward every debug line across the FFI.
    logging.getLogger("neonize.utils.log").setLevel(quiet)
    for name in ("neonize.client", "neonize.aioze.client"):
        target = logging.getLogger(name)
        if not any(isinstance(f, WithholdObjects) for f in target.filters):
            target.addFilter(WithholdObjects())


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"wabot.worker.{name}")
