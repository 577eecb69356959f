"""The messages a bot saw last (received and sent), so a send can name one by its id alone.

A reply's quote, a reaction, an edit and a delete-for-everyone all point at an earlier message,
and WhatsApp needs more than its id: who wrote it (the quote's participant, the reaction's and
the revoke's key) and, for a quote, what it said. WhatsApp never tells whether an id exists:
a reaction to an id nobody sent is accepted and lost. So the worker resolves ids here and
refuses the ones it does not know (404 `message_not_found`), instead of sending into the void.

Bounded (the oldest go first) and in memory: a restart forgets; the ids of a chat's last few
thousand messages are what an API client reacts to or quotes in practice. Only a short text
is kept per message (the quote shows it), never media, so the bound is also a memory bound:
~0.5 KiB a message.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

# What a quote carries of the quoted message's text (WhatsApp shows a few lines of it).
SNIPPET = 256


class Known(NamedTuple):
    """One message, as a later send needs it (a tuple: one is made per message received)."""

    chat: str  # the chat's JID
    message_id: str
    sender: str  # who wrote it: a user's JID (for the bot's own messages: its own JID or "")
    from_me: bool
    text: str = ""  # its text or caption, cut to SNIPPET characters
    kind: str = "text"


class RecentMessages:
    """(chat, message id) -> Known, for the last `capacity` messages; thread-safe (the
    pipeline, the API's threads and neonize's callback thread all write)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], Known] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, known: Known) -> None:
        key = (known.chat, known.message_id)
        if len(known.text) > SNIPPET:
            known = known._replace(text=known.text[:SNIPPET])
        with self._lock:
            self._items[key] = known
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def find(self, chat: str, message_id: str) -> Known | None:
        with self._lock:
            return self._items.get((chat, message_id))

    def __len__(self) -> int:
        return len(self._items)
