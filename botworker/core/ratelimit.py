"""Outgoing rate limits: token buckets per chat and per bot.

WhatsApp bans numbers that burst, and a bot that answers every message of a flood amplifies
it. A bucket of `per_minute` tokens refilling at `per_minute / 60` per second allows a short
burst up to the minute's allowance and then a steady `per_minute` rate. The bucket arithmetic
is a pure function; `RateLimiter` only keeps the buckets (bounded: the least recently used
chat is forgotten first, which can only make the limit more generous for a chat idle long
enough to have refilled anyway).

Policy for excess: dropped, not queued. A reply that would exceed the limit is not sent and is
counted (wabot_messages_dropped_total{reason="rate_limited"}); a queue would only postpone the
burst WhatsApp punishes and grow memory under a flood.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple


class Bucket(NamedTuple):
    """A tuple, not a frozen dataclass: every reply makes up to six (would_allow and
    try_acquire refill both buckets), and a frozen dataclass's __init__ costs ~0.5 us more
    each (object.__setattr__ per field)."""

    tokens: float
    updated: float


def refill(b: Bucket, now: float, per_minute: float) -> Bucket:
    """The bucket at `now`: topped up at per_minute/60 tokens a second, capped at per_minute."""
    elapsed = max(0.0, now - b.updated)
    return Bucket(min(float(per_minute), b.tokens + elapsed * per_minute / 60.0), now)


def full(now: float, per_minute: float) -> Bucket:
    return Bucket(float(per_minute), now)


@dataclass(frozen=True)
class Limits:
    per_chat_per_minute: int
    per_bot_per_minute: int


class RateLimiter:
    """Both buckets must have a token; a send takes one from each, or from neither."""

    def __init__(self, limits: Limits, max_chats: int = 10_000) -> None:
        self._limits = limits
        self._max_chats = max_chats
        self._chats: OrderedDict[str, Bucket] = OrderedDict()
        self._bot: Bucket | None = None
        self._lock = threading.Lock()

    def set_limits(self, limits: Limits) -> None:
        """New limits from a spec change apply to the next decision; tokens carry over
        (capped at the new size), so a change cannot be used to reset a bucket."""
        with self._lock:
            self._limits = limits

    def _chat_bucket(self, chat: str, now: float) -> Bucket:
        per = self._limits.per_chat_per_minute
        b = self._chats.get(chat)
        return full(now, per) if b is None else refill(b, now, per)

    def _bot_bucket(self, now: float) -> Bucket:
        per = self._limits.per_bot_per_minute
        return full(now, per) if self._bot is None else refill(self._bot, now, per)

    def would_allow(self, chat: str, now: float) -> bool:
        """Peek without taking: used to skip work for a chat that could not be answered."""
        with self._lock:
            return self._chat_bucket(chat, now).tokens >= 1 and self._bot_bucket(now).tokens >= 1

    def retry_after(self, chat: str, now: float) -> float:
        """Seconds until one message to `chat` would be allowed (0 when it is now): what a
        429 answer's Retry-After says."""
        with self._lock:
            waits = []
            for bucket, per in ((self._chat_bucket(chat, now), self._limits.per_chat_per_minute),
                                (self._bot_bucket(now), self._limits.per_bot_per_minute)):
                if bucket.tokens < 1:
                    waits.append((1 - bucket.tokens) * 60.0 / per)
            return max(waits, default=0.0)

    def try_acquire(self, chat: str, now: float) -> str | None:
        """Take a token for one message to `chat`; None when allowed, else which limit hit."""
        with self._lock:
            c = self._chat_bucket(chat, now)
            b = self._bot_bucket(now)
            if c.tokens < 1:
                self._store(chat, c)
                self._bot = b
                return "chat"
            if b.tokens < 1:
                self._store(chat, c)
                self._bot = b
                return "bot"
            self._store(chat, Bucket(c.tokens - 1, now))
            self._bot = Bucket(b.tokens - 1, now)
            return None

    def _store(self, chat: str, b: Bucket) -> None:
        self._chats[chat] = b
        self._chats.move_to_end(chat)
        while len(self._chats) > self._max_chats:
            self._chats.popitem(last=False)
