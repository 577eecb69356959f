"""Retry delays: capped exponential backoff, jittered, never a busy loop.

When WhatsApp or the network drops, every bot in the fleet notices at the same moment; without
jitter they would all redial in lock-step and hit the servers (and get rate-limited) together.
The ceiling doubles with each consecutive failure up to a cap, so a long outage does not grow
the delay without bound. The random draw is a parameter so the function stays pure and
testable. Two jitters:

- `full` (the default): a uniform draw in [0, ceiling]. Spreads a burst the most; used where
  the retries of one process are what matters (webhook deliveries, reading the bot's object).
- `equal`: a uniform draw in [ceiling/2, ceiling]. Still spread over half the ceiling, but a
  retry never comes early: at the cap each worker waits at least cap/2. The worker's WhatsApp
  dials use it (botworker.lifecycle): 1,000 bots stuck in a long outage with a 300 s cap
  average 1000/225 s = 4.4 dials/s, where full jitter (mean cap/2) gives 6.7/s and lets a
  worker redial after 0.5 s even an hour into the outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wabot.backoff import capped_exponential

Jitter = Literal["full", "equal"]


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    # A floor so that even a lucky draw of 0 does not turn into a busy loop of dials.
    min_s: float = 0.5
    jitter: Jitter = "full"

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before attempt number `attempt` (1-based)."""
        return capped_exponential(self.base_s, self.cap_s, attempt)

    def _bounds(self, attempt: int) -> tuple[float, float, float]:
        """(low, high, floor) of the draw for `attempt`: uniform in [low, high], then floored."""
        high = self.ceiling(attempt)
        low = high / 2 if self.jitter == "equal" else 0.0
        return low, high, min(self.min_s, high)

    def delay(self, attempt: int, rand: float) -> float:
        """The delay before `attempt`, given a uniform draw `rand` in [0, 1)."""
        if attempt <= 0:
            return 0.0
        rand = min(max(rand, 0.0), 1.0)
        low, high, floor = self._bounds(attempt)
        return max(floor, low + (high - low) * rand)

    def at_cap(self, rand: float) -> float:
        """The delay once the ceiling has reached the cap (any attempt far enough out)."""
        return self.delay(10_000, rand)

    def expected(self, attempt: int) -> float:
        """The mean of `delay(attempt, U(0, 1))`: what a reader of the policy wants to know."""
        if attempt <= 0:
            return 0.0
        low, high, floor = self._bounds(attempt)
        if high <= low or floor <= low:
            return (low + high) / 2
        # P(draw < floor) * floor + the mean of the draws above the floor.
        return ((floor - low) * floor + (high * high - floor * floor) / 2) / (high - low)
