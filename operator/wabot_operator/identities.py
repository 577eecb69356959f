"""Which WhatsAppBot holds each bot identity (serverName, botId) of a namespace.

Two bots of one identity would write the same database rows (audit, notes: everything is keyed
by tenant and bot) and the non-Kubernetes tiers refuse them for that reason (docs/tiers.md).
The API server cannot refuse the second one (no uniqueness across objects), so the operator
keeps this book from the bots' watch events and lets only the first holder run: the oldest
by creationTimestamp. That has one-second resolution: within a second, a bot that already ran
(it has a phase) goes before a new one, which goes before one refused for its identity (so a
restarted operator keeps the same winner even if the winner's first status was never written),
then the one this operator saw first. The others are refused until it is gone.

Filled from a LIST at start-up, before the first pass (a restarted operator must not let the
second bot run for a moment because the first one's event came later), then by the watch.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, str]  # namespace, serverName, botId


DUPLICATE = "DuplicateBotId"  # the reason of a bot refused for its identity (policy.py)


@dataclass(frozen=True, order=True)
class _Holder:
    created: str  # RFC 3339 in UTC: sorts as time
    rank: int  # 0 ran, 1 new, 2 refused for its identity
    seq: int  # when this process first saw it (the start-up LIST, then the watch)
    name: str


def _rank(bot: Mapping[str, Any]) -> int:
    status = bot.get("status") or {}
    if any(c.get("type") == "Degraded" and c.get("reason") == DUPLICATE
           for c in status.get("conditions") or [] if isinstance(c, Mapping)):
        return 2
    return 0 if status.get("phase") else 1


def identity(bot: Mapping[str, Any]) -> Key | None:
    """The bot's identity as the worker will use it (botId defaults to metadata.name)."""
    meta = bot.get("metadata") or {}
    spec = bot.get("spec") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    server, bot_id = spec.get("serverName"), spec.get("botId") or name
    if (isinstance(namespace, str) and isinstance(server, str) and isinstance(bot_id, str)
            and isinstance(name, str)):
        return namespace, server, bot_id
    return None


class IdentityBook:
    """Thread-safe: the watch handlers write it, the passes (in a pool) read it."""

    def __init__(self) -> None:
        self._holders: dict[Key, dict[str, _Holder]] = {}
        self._key_of: dict[tuple[str, str], Key] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def seen(self, bot: Mapping[str, Any]) -> list[str]:
        """Record a bot; returns the other bots of its identity (their standing may change)."""
        key = identity(bot)
        meta = bot.get("metadata") or {}
        if key is None:
            return []
        namespace, name = key[0], str(meta["name"])
        with self._lock:
            old = self._key_of.get((namespace, name))
            others = self._drop(namespace, name) if old is not None and old != key else []
            holders = self._holders.setdefault(key, {})
            before = holders.get(name)
            holders[name] = _Holder(str(meta.get("creationTimestamp") or ""), _rank(bot),
                                    next(self._seq) if before is None else before.seq, name)
            self._key_of[(namespace, name)] = key
            return others + [n for n in holders if n != name]

    def gone(self, namespace: str, name: str) -> list[str]:
        """The bot no longer exists; returns the bots that shared its identity."""
        with self._lock:
            return self._drop(namespace, name)

    def _drop(self, namespace: str, name: str) -> list[str]:
        key = self._key_of.pop((namespace, name), None)
        if key is None:
            return []
        holders = self._holders.get(key, {})
        holders.pop(name, None)
        if not holders:
            self._holders.pop(key, None)
        return list(holders)

    def earlier(self, namespace: str, name: str) -> str | None:
        """The name of the bot that holds this bot's identity before it, if any."""
        with self._lock:
            key = self._key_of.get((namespace, name))
            if key is None:
                return None
            first = min(self._holders[key].values())
            return None if first.name == name else first.name
