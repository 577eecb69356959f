"""A bot's daemon between passes: a watch event wakes it (also one that came during a pass),
kopf's stop ends its sleep, and its lock keeps a pass and the finalizer apart while holding
nothing once neither needs it (one per bot would stay for the bot's lifetime)."""

from __future__ import annotations

import asyncio
import time

import pytest

# kopf's own stop flag, as kopf hands it to a daemon (`stopped`); not public API.
from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter
from wabot_operator.botloop import BotLocks, Waker


def _stopped() -> tuple[FlagSetter, AsyncFlagWaiter]:  # type: ignore[type-arg]
    setter: FlagSetter = FlagSetter()  # type: ignore[type-arg]
    return setter, AsyncFlagWaiter(setter)


@pytest.mark.parametrize("by", ["a watch event", "a stop"])
def test_a_sleeping_daemon_wakes_at_once_on_a_watch_event_or_a_stop(by: str) -> None:
    async def run() -> tuple[bool, float]:
        setter, stopped = _stopped()
        wake = Waker()
        started = time.monotonic()
        asyncio.get_running_loop().call_later(
            0.05, wake.set if by == "a watch event" else setter.set)
        woken = await wake.sleep(stopped, 30)
        return woken, time.monotonic() - started

    woken, took = asyncio.run(run())
    assert woken == (by == "a watch event") and took < 5


def test_an_event_during_a_pass_is_not_lost_and_a_cleared_waker_sleeps_its_time() -> None:
    async def run() -> tuple[bool, bool, float]:
        _, stopped = _stopped()
        wake = Waker()
        wake.set()  # came while the pass ran
        at_once = await wake.sleep(stopped, 30)
        wake.clear()  # the next pass starts
        started = time.monotonic()
        again = await wake.sleep(stopped, 0.1)
        return at_once, again, time.monotonic() - started

    at_once, again, took = asyncio.run(run())
    assert at_once and not again and took >= 0.09


def test_a_bots_lock_keeps_two_users_apart_and_is_gone_after_the_last() -> None:
    async def run() -> tuple[list[str], int, int]:
        locks = BotLocks()
        order: list[str] = []

        async def user(name: str, pause: float) -> None:
            async with locks.hold("ns", "bot"):
                order.append(f"{name} in")
                await asyncio.sleep(pause)
                order.append(f"{name} out")

        first = asyncio.create_task(user("pass", 0.05))
        await asyncio.sleep(0)
        second = asyncio.create_task(user("finalizer", 0))
        waiting = asyncio.create_task(user("cancelled", 0))
        await asyncio.sleep(0.01)
        during = len(locks)
        waiting.cancel()  # a daemon stopped while it waited for the lock
        await asyncio.gather(first, second, return_exceptions=True)
        await asyncio.gather(waiting, return_exceptions=True)
        return order, during, len(locks)

    order, during, after = asyncio.run(run())
    assert order == ["pass in", "pass out", "finalizer in", "finalizer out"]
    assert during == 1 and after == 0
