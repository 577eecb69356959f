"""How big the reliability suite runs: a CI size that fits the budget, and the full size of
issue 8 behind one switch.

    scripts/test.sh tests/reliability                      # CI size
    WABOT_CHAOS_FULL=1 scripts/test.sh tests/reliability   # full size (writes FIGURES.md)

Each size can also be set on its own (`WABOT_CHAOS_ROUNDS=40`, ...); `WABOT_CHAOS_SEED` fixes
the random choices of the chaos and message generators (printed with the figures).
"""

from __future__ import annotations

import os
import random

FULL = os.environ.get("WABOT_CHAOS_FULL", "").strip().lower() in ("1", "true", "yes")


def _size(name: str, ci: int, full: int) -> int:
    raw = os.environ.get(f"WABOT_CHAOS_{name}", "").strip()
    return int(raw) if raw else (full if FULL else ci)


CHAOS_ROUNDS = _size("ROUNDS", 40, 100)
CHAOS_BOTS = _size("BOTS", 16, 50)
# Of those, how many run their real worker on the real node (devcluster/node.py).
CHAOS_REAL_BOTS = _size("REAL_BOTS", 2, 4)
INVALID_SPECS = _size("INVALID_SPECS", 1000, 3000)
HOSTILE_MESSAGES = _size("MESSAGES", 20_000, 100_000)
OUTAGE_SECONDS = _size("OUTAGE_SECONDS", 10, 60)
ISOLATION_BOTS = _size("ISOLATION_BOTS", 6, 20)

_seed = os.environ.get("WABOT_CHAOS_SEED", "").strip()
SEED = int(_seed) if _seed else random.SystemRandom().randrange(1, 2**31)
SIZE_NAME = "full" if FULL else "ci"
