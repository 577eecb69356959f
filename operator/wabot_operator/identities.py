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
import sys
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

Key = tuple[str, str, str]  # namespace, serverName, botId


DUPLICATE = "DuplicateBotId"  # the reason of a bot refused for its identity (policy.py)


class _Holder(NamedTuple):
    """Sorts as its fields in order (a tuple), so the first holder is the smallest."""

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
    """Thread-safe: the watch handlers write it, the passes (in a pool) read it.

    It holds an entry for every bot the operator watches, so it keeps only names and small
    tuples: a bot's identity is almost always its own (one holder, a 1-tuple, not a dict), and
    the namespace, serverName and creation second, which many bots share, are interned rather
    than kept once per bot from each watch event's body. The first version held a dict and a
    dataclass per bot: ~0.8 KB per bot, half of it gone now (docs/benchmarks/operator.md,
    "Peak memory after the restructuring")."""

    def __init__(self) -> None:
        self._holders: dict[Key, tuple[_Holder, ...]] = {}
        self._key_of: dict[tuple[str, str], Key] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def seen(self, bot: Mapping[str, Any]) -> list[str]:
        """Record a bot; returns the other bots of its identity (their standing may change)."""
        found = identity(bot)
        meta = bot.get("metadata") or {}
        if found is None:
            return []
        name = str(meta["name"])
        key = (sys.intern(found[0]), sys.intern(found[1]), found[2])
        namespace = key[0]
        created = sys.intern(str(meta.get("creationTimestamp") or ""))
        with self._lock:
            old = self._key_of.get((namespace, name))
            others = self._drop(namespace, name) if old is not None and old != key else []
            holders = self._holders.get(key, ())
            before = next((h for h in holders if h.name == name), None)
            holder = _Holder(created, _rank(bot),
                             next(self._seq) if before is None else before.seq, name)
            self._holders[key] = (*(h for h in holders if h.name != name), holder)
            if old != key:
                self._key_of[(namespace, name)] = key
            return others + [h.name for h in holders if h.name != name]

    def gone(self, namespace: str, name: str) -> list[str]:
        """The bot no longer exists; returns the bots that shared its identity."""
        with self._lock:
            return self._drop(namespace, name)

    def _drop(self, namespace: str, name: str) -> list[str]:
        key = self._key_of.pop((namespace, name), None)
        if key is None:
            return []
        holders = tuple(h for h in self._holders.get(key, ()) if h.name != name)
        if holders:
            self._holders[key] = holders
        else:
            self._holders.pop(key, None)
        return [h.name for h in holders]

    def earlier(self, namespace: str, name: str) -> str | None:
        """The name of the bot that holds this bot's identity before it, if any."""
        with self._lock:
            key = self._key_of.get((namespace, name))
            if key is None:
                return None
            first = min(self._holders[key])
            return None if first.name == name else first.name
