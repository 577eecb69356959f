"""What a bot's daemon (handlers.reconcile_loop) holds between its passes: the wake-up call a
watch event sets, and the lock that keeps a pass and the finalizer of one bot apart.

Every bot has a daemon that sleeps almost all of the time, so whatever a sleeping daemon holds
is held once per bot. With an asyncio.Event per bot (its empty waiter deque alone is ~0.8 KB),
a task waiting on it during each sleep and an asyncio.Lock kept for the bot's lifetime, that
was ~2 KB per bot more than now, ~2 MiB for 1,000 bots (tracemalloc; docs/benchmarks/
operator.md, "Peak memory after the restructuring"). A Waker is a flag and, only while its
daemon sleeps, one future; a bot's lock exists only while a pass or the finalizer uses it.

Used from the event loop only (kopf's handlers and daemons are `async def`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import kopf


class Waker:
    """Set by the watch handlers, cleared by the daemon before each pass: a set that comes
    while a pass runs is not lost, the next sleep returns at once."""

    __slots__ = ("_future", "_set")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def sleep(self, stopped: kopf.DaemonStopped, timeout: float) -> bool:
        """Sleep until woken, asked to stop, or the timeout passes. True when woken."""
        if self._set:
            return True
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stop = asyncio.ensure_future(stopped.wait())
        self._future = woken
        try:
            await asyncio.wait((woken, stop), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._future = None
            woken.cancel()
            stop.cancel()
        return self._set


class BotLocks:
    """One asyncio.Lock per bot while anyone holds or waits for it, dropped after the last."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, namespace: str, bot: str) -> AsyncIterator[None]:
        key = (namespace, bot)
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]
