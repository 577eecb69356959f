"""Reconnect delays: capped exponential backoff with full jitter.

When WhatsApp or the network drops, every bot in the fleet notices at the same moment; without
jitter they would all redial in lock-step and hit the servers (and get rate-limited) together.
Full jitter (a uniform draw between 0 and the exponential ceiling) spreads them out best, and
the cap keeps a long outage from growing the delay without bound. The random draw is a
parameter so the function stays pure and testable.
"""

from __future__ import annotations

from dataclasses import dataclass

from wabot.backoff import capped_exponential


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    # A floor so that even a lucky draw of 0 does not turn into a busy loop of dials.
    min_s: float = 0.5

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before attempt number `attempt` (1-based)."""
        return capped_exponential(self.base_s, self.cap_s, attempt)

    def delay(self, attempt: int, rand: float) -> float:
        """Full-jitter delay for `attempt`, given a uniform draw `rand` in [0, 1)."""
        if attempt <= 0:
            return 0.0
        rand = min(max(rand, 0.0), 1.0)
        ceiling = self.ceiling(attempt)
        return max(min(self.min_s, ceiling), ceiling * rand)
