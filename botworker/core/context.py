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
from typing import TYPE_CHECKING, Any

from wabot.spec_view import SettingsSpec

from .outgoing import Outgoing
from .recent import Known

if TYPE_CHECKING:
    from wabot.event_view import MessageData

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
    # Takes a text, or an Outgoing for any other kind (the pipeline's reply goes to
    # Sender.send, which sends both).
    reply_fn: Callable[[Any], None]
    log: logging.LoggerAdapter[logging.Logger]
    db: SessionFactory = field(default=_no_database)
    received_at: float = 0.0
    # The incoming message the command came in, built when a handler first asks (most
    # never do), and its file when spec.media keeps it: see `message` and `media()`.
    message_fn: Callable[[], MessageData | None] = field(default=lambda: None)
    media_fn: Callable[[], bytes | None] = field(default=lambda: None)
    # The bot's own WhatsApp account: groups, contacts, presence (runtime/account_calls.py
    # AccountCalls: groups(), group(id), create_group(name, people), rename, describe,
    # settings, participants(id, action, people), invite_link, join, leave, on_whatsapp,
    # contact, picture, ids, set_presence, chat_presence, subscribe). Each call is checked,
    # rate-limited and counted as through the API, and raises wabot.account.AccountError (status,
    # code, message) when refused. None where the worker has no session (unit tests).
    account: Any = None

    @property
    def tenant(self) -> str:
        return self.server_name

    def reply(self, text: str) -> None:
        """Answer in the chat the command came from (quoting it), within the rate limits."""
        self.reply_fn(text)

    @property
    def message(self) -> MessageData | None:
        """The incoming message the command came in: its type, caption, media, quoted
        message, mentions (the `message` webhook event's data). A frozen dataclass of
        wabot/event_view.py with the attributes of wabot.events.MessageData (the worker loads
        no pydantic for it): no model_dump(); `wabot.specread.dump(ctx.message)` gives the
        event's JSON data, MessageData.model_validate(that) the model."""
        return self.message_fn()

    def media(self) -> bytes | None:
        """The file of the message that carried the command (an image with a caption, ...),
        when spec.media.download is "full" and it was kept; else None."""
        return self.media_fn()

    # --- answering with any kind of message (plugins; custom commands use the same) ----------
    # Each goes through the bot's rate limits like reply(), quoting the command (a reaction
    # reacts to it instead). A file is bytes, or an http(s) URL the worker downloads under
    # the webhook egress policy; WhatsApp's limits are checked before anything is sent, and
    # a file that fails them is not sent (and logged). The send API's models (pydantic) load
    # at the first such answer: a bot answering text never loads them.

    def reply_image(self, image: bytes | str, caption: str | None = None, *,
                    view_once: bool = False) -> None:
        self._media("image", image, caption=caption, view_once=view_once)

    def reply_video(self, video: bytes | str, caption: str | None = None, *,
                    view_once: bool = False) -> None:
        self._media("video", video, caption=caption, view_once=view_once)

    def reply_audio(self, audio: bytes | str) -> None:
        self._media("audio", audio)

    def reply_voice(self, voice: bytes | str) -> None:
        """A voice note (push-to-talk): Ogg Opus."""
        self._media("voice", voice)

    def reply_document(self, document: bytes | str, file_name: str | None = None, *,
                       caption: str | None = None, mimetype: str | None = None) -> None:
        """A file; its name defaults to the URL's last segment, or "file"."""
        self._media("document", document, file_name=file_name, caption=caption,
                    mimetype=mimetype)

    def reply_sticker(self, sticker: bytes | str) -> None:
        self._media("sticker", sticker)

    def reply_location(self, latitude: float, longitude: float, name: str | None = None,
                       address: str | None = None) -> None:
        from wabot.api import Location

        self.reply_fn(Outgoing("location", Location(latitude=latitude, longitude=longitude,
                                                    name=name, address=address)))

    def reply_contact(self, name: str, phone: str) -> None:
        from wabot.api import Contact

        self.reply_fn(Outgoing("contact", Contact(name=name, phone=phone)))

    def reply_poll(self, question: str, options: list[str], *, multiple: bool = False) -> None:
        from wabot.api import Poll

        self.reply_fn(Outgoing("poll", Poll(question=question, options=options,
                                            selectable_count=0 if multiple else 1)))

    def react(self, emoji: str) -> None:
        """React to the command's message; an empty emoji removes the reaction."""
        from wabot.api import Reaction

        target = Known(self.chat, self.message_id, self.sender, False)
        self.reply_fn(Outgoing("reaction", Reaction(message_id=self.message_id, emoji=emoji),
                               target=target))

    def _media(self, kind: str, source: bytes | str, **fields: Any) -> None:
        from wabot.api import Media

        given = {k: v for k, v in fields.items() if v not in (None, False)}
        if isinstance(source, str):
            self.reply_fn(Outgoing(kind, Media(url=source, **given)))
        else:
            self.reply_fn(Outgoing(kind, Media(**given), data=bytes(source),
                                   extra={"field": kind}))

    def feature(self, name: str, default: bool = False) -> bool:
        return bool(self.features.get(name, default))
