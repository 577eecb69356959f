"""Which worker group owns which bot: rendezvous (highest-random-weight) hashing.

Each bot goes to the group with the highest hash of (group, serverName/botId). The answer
depends only on the bot's identity and the set of groups, never on the order of the bots file
or on the other bots, so a restart, a reload or an added bot moves nobody; adding a group moves
only the bots the new group now wins (about 1/(N+1) of them), and removing one moves only its
own bots. SHA-256 and not Python's `hash()`, which is salted per process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def group_names(count: int) -> list[str]:
    return [f"group-{i}" for i in range(count)]


def _score(group: str, key: str) -> int:
    digest = hashlib.sha256(f"{group}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(key: str, groups: Sequence[str]) -> str:
    if not groups:
        raise ValueError("no worker groups to assign bots to")
    # Ties (astronomically unlikely) go to the smaller name, so the answer is still stable.
    return max(groups, key=lambda g: (_score(g, key), [-ord(c) for c in g]))


def assign(keys: Iterable[str], groups: Sequence[str]) -> dict[str, str]:
    return {key: owner(key, groups) for key in keys}
