"""What a command handler sees: the seed's CommandContext, one per command invocation.

A handler gets everything about its bot and tenant through this object and nothing global:
the tenant (server_name) is fixed here, the database session it can open is already scoped to
that tenant, and `reply()` goes through this bot's rate limits. That is what keeps a plugin
written for one bot from reaching another bot's chats or another tenant's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from wabot.events import MessageData
from wabot.spec import SettingsSpec

FAILED_TEXT = "Sorry, that command failed."
DB_UNAVAILABLE_TEXT = "The database is unavailable right now, try again later."


class DatabaseUnavailable(Exception):
    """Raised by `CommandContext.db()` when the database cannot be reached; the pipeline
    answers the user with DB_UNAVAILABLE_TEXT instead of the generic failure text."""


class CrossTenantWrite(PermissionError):
    """A row for another tenant, refused before anything reaches the database (on PostgreSQL
    row-level security would refuse it too)."""


SessionFactory = Callable[[], AbstractContextManager[Any]]


def _no_database() -> AbstractContextManager[Any]:
    raise DatabaseUnavailable("no database configured")


@dataclass(frozen=True)
class CommandContext:
    bot_id: str
    server_name: str
    chat: str
    sender: str
    push_name: str
    message_id: str
    command: str
    args: tuple[str, ...]
    raw_args: str
    prefix: str
    settings: SettingsSpec
    features: Mapping[str, bool]
    reply_fn: Callable[[str], None]
    log: logging.LoggerAdapter[logging.Logger]
    db: SessionFactory = field(default=_no_database)
    received_at: float = 0.0
    # The incoming message the command came in (its type, caption, media, quoted message,
    # mentions: the `message` webhook event's data), and its file when spec.media keeps it.
    message: MessageData | None = None
    media_fn: Callable[[], bytes | None] = field(default=lambda: None)

    @property
    def tenant(self) -> str:
        return self.server_name

    def reply(self, text: str) -> None:
        """Answer in the chat the command came from (quoting it), within the rate limits."""
        self.reply_fn(text)

    def media(self) -> bytes | None:
        """The file of the message that carried the command (an image with a caption, ...),
        when spec.media.download is "full" and it was kept; else None."""
        return self.media_fn()

    def feature(self, name: str, default: bool = False) -> bool:
        return bool(self.features.get(name, default))
