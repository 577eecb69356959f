"""Which incoming messages the bot looks at at all. Decisions are pure; the duplicate memory is
a small bounded LRU.

WhatsApp redelivers messages (retries, history sync after a reconnect), the account's own
messages come back as events, and groups can be noisy; each of these would otherwise become a
duplicate reply, a reply loop, or spam in a group the bot was merely added to.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Chats that are never conversations: status updates, broadcast lists, channels.
_SILENT_SERVERS = frozenset({"broadcast", "newsletter"})


@dataclass(frozen=True)
class Inbound:
    """What the pipeline needs of a MessageEv, extracted once."""

    message_id: str
    chat: str
    chat_server: str
    sender: str
    is_from_me: bool
    is_group: bool
    push_name: str
    timestamp_ms: int  # the kind and text are core/inbound.py's, read after the filters


def drop_reason(msg: Inbound, *, ignore_groups: bool, own_jid_user: str | None) -> str | None:
    """Why the message is ignored, or None to process it."""
    if msg.is_from_me:
        return "own_message"
    if own_jid_user and msg.sender.split("@", 1)[0].split(":", 1)[0] == own_jid_user:
        return "own_message"
    if msg.chat_server in _SILENT_SERVERS:
        return "broadcast"
    if msg.is_group and ignore_groups:
        return "group"
    if not msg.message_id:
        return "no_id"
    return None


class SeenIds:
    """The last `capacity` message IDs, to drop redeliveries. Bounded so a flood of unique IDs
    costs a fixed amount of memory."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen_before(self, key: str) -> bool:
        """Record `key`; True when it was already among the remembered IDs."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return True
        self._ids[key] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
