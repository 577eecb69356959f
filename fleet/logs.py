"""JSON log lines for the supervising tiers, in the worker's format.

Bots' own processes log with `bot` and `server_name` on every line (botworker.logs); the
supervisor's lines about a bot carry the same two fields (passed as `extra`), so one query by
bot or tenant finds what the bot said and what was done to it. A worker group adds `group`.
"""

from __future__ import annotations

from wabot.logs import install_json_handler


def configure_logging(level: str = "INFO", **fields: str) -> None:
    install_json_handler(level, {"role": "fleet", **fields})
