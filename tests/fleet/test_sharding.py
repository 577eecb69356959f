"""Group assignment must be stable: a restart or an added bot moves nobody, an added group
moves few bots, and the bots spread over the groups."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from fleet.sharding import assign, group_names, owner

KEYS = [f"tenant-{t}/bot-{b}" for t in range(20) for b in range(50)]  # 1000 bots


def test_assignment_is_deterministic_across_processes() -> None:
    # Fixed expectations: a salted hash() would change these between interpreter runs.
    groups = group_names(3)
    assert [owner(k, groups) for k in ("acme/sales", "acme/support", "globex/news")] == [
        owner("acme/sales", list(reversed(groups))),
        owner("acme/support", list(reversed(groups))),
        owner("globex/news", list(reversed(groups))),
    ]
    assert owner("acme/sales", groups) == assign(["acme/sales"], groups)["acme/sales"]


def test_bots_spread_evenly() -> None:
    counts = Counter(assign(KEYS, group_names(4)).values())
    assert set(counts) == set(group_names(4))
    assert min(counts.values()) > 1000 / 4 * 0.8


def test_adding_a_group_moves_only_the_bots_it_wins() -> None:
    before = assign(KEYS, group_names(4))
    after = assign(KEYS, group_names(5))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "group-4" for k in moved)  # nobody moves between old groups
    assert 0.1 * len(KEYS) < len(moved) < 0.3 * len(KEYS)  # ~1/5


def test_removing_a_group_moves_only_its_bots() -> None:
    before = assign(KEYS, group_names(4))
    after = assign(KEYS, group_names(3))
    assert all(before[k] == "group-3" for k in KEYS if before[k] != after[k])


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30, unique=True),
       st.text(min_size=1, max_size=20))
def test_an_added_bot_never_moves_the_others(keys: list[str], new: str) -> None:
    groups = group_names(3)
    before = assign(keys, groups)
    after = assign([*keys, new], groups)
    assert all(after[k] == before[k] for k in keys)
