"""Fleet-wide pacing of pod re-creations, so a mass restart does not stampede.

When a node dies, an image is rolled out or someone deletes every bot pod, hundreds of bots need
a new pod in the same second. Each new pod is a worker that dials WhatsApp at once (many
reconnects from one cluster in one second is what gets numbers rate-limited or banned) and
costs the API server a create, a schedule, a bind and a few status writes. The operator
therefore hands out *start slots* at a fixed rate: a bot whose pod must be re-created gets the
next free slot and its pass waits for it; a bot's slot is kept across passes (the pass is
level-based and may run several times before the slot comes), so waiting never loses a bot its
place in the queue.

A slot says when a bot may start at the earliest, not that it will: its pass may come late (a
restarted operator working through 1,000 first passes, a busy API server), and several late
bots would then start in the same moment. The starts themselves are therefore spaced as well
(a token bucket, GCRA): never more than the rate, plus the burst, in any second.

Pure and clock-free: callers pass `now` (monotonic seconds); the lock is there because passes
run on kopf's executor threads.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

# Slots are sums of float intervals; a slot due "now" must not read as 1e-13 s away.
_EPSILON = 1e-6
# How far `take` may push the paced starts back, at most.
_TAKE_HORIZON_S = 1.0


class SlotPacer:
    """Start slots at `rate_per_s`, first come first served, with a burst of `burst` slots.

    `rate_per_s <= 0` turns pacing off (every request is granted at once).
    """

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next_free: float | None = None  # the earliest time the next new slot may take
        self._next_start = -float("inf")  # the theoretical time of the next start (GCRA)
        self._slots: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def wait_for(self, key: Hashable, now: float) -> float:
        """Seconds until `key` may start (0.0 = now, and the slot is used up).

        A key keeps the slot it was given until it uses it or is `forget`-ed.
        """
        if self._interval == 0.0:
            return 0.0
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                # An idle pacer refills up to `burst` slots' worth of credit, no more.
                earliest = now - (self.burst - 1) * self._interval
                slot = earliest if self._next_free is None else max(self._next_free, earliest)
                self._next_free = slot + self._interval
                self._slots[key] = slot
            if slot > now + _EPSILON:
                return slot - now
            # Due: start now unless other late-comers just used the rate up.
            earliest_start = self._next_start - (self.burst - 1) * self._interval
            if earliest_start > now + _EPSILON:
                return earliest_start - now
            self._next_start = max(self._next_start, now) + self._interval
            del self._slots[key]
            return 0.0

    def take(self, now: float) -> None:
        """Count a start that did not ask for a slot (a status write that must not wait), so
        that the paced starts due next make room for it. It never pushes them back by more
        than _TAKE_HORIZON_S: a steady stream of such starts slows the paced ones, it does
        not starve them."""
        if self._interval == 0.0:
            return
        with self._lock:
            self._next_start = min(max(self._next_start, now) + self._interval,
                                   now + _TAKE_HORIZON_S)

    def forget(self, key: Hashable) -> None:
        """Drop `key`'s slot (the bot no longer needs a start: deleted, suspended, pod back)."""
        with self._lock:
            self._slots.pop(key, None)

    def waiting(self) -> int:
        """How many bots hold a slot they have not used yet (a gauge for the operator)."""
        with self._lock:
            return len(self._slots)
