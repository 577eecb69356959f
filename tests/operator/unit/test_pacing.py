"""The restart pacer: a mass restart is spread over time at the configured rate, no bot loses
its place by waiting, and an idle pacer only lends a bounded burst."""

from __future__ import annotations

import heapq
import threading

import pytest
from wabot_operator.pacing import SlotPacer


def start_times(pacer: SlotPacer, keys: list[str], now: float) -> dict[str, float]:
    """Drive each key like the operator's passes do: ask, sleep what it says, ask again."""
    started: dict[str, float] = {}
    for key in keys:
        t = now
        while (wait := pacer.wait_for(key, t)) > 0:
            t += wait
        started[key] = t
    return started


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + 1.0 - 1e-9) for i, t in enumerate(times))


def test_a_thousand_restarts_never_exceed_the_rate_in_any_second() -> None:
    pacer = SlotPacer(rate_per_s=10, burst=1)
    times = start_times(pacer, [f"bot-{i}" for i in range(1000)], now=100.0).values()
    assert busiest_second(list(times)) == 10
    # ... and the whole fleet is back in N/rate seconds, not later.
    assert max(times) - 100.0 == pytest.approx(99.9, abs=1e-3)


def test_a_burst_adds_at_most_burst_minus_one_starts_to_a_second() -> None:
    pacer = SlotPacer(rate_per_s=10, burst=5)
    pacer.wait_for("warm", 0.0)
    times = start_times(pacer, [f"bot-{i}" for i in range(200)], now=50.0).values()
    assert busiest_second(list(times)) == 10 + 5 - 1


def test_bots_whose_passes_come_late_still_start_at_the_rate() -> None:
    """Every bot got its slot at once (the pods were deleted together), but their passes came
    back late and together (the operator was busy): they must not all start in that second."""
    pacer = SlotPacer(rate_per_s=3, burst=1)
    keys = [f"bot-{i}" for i in range(300)]
    for key in keys:
        pacer.wait_for(key, 0.0)
    # From t=60 (180 slots overdue) each pass asks, sleeps what it is told and asks again.
    asks = [(60.0, key) for key in keys]
    heapq.heapify(asks)
    started: dict[str, float] = {}
    while asks:
        t, key = heapq.heappop(asks)
        wait = pacer.wait_for(key, t)
        if wait == 0.0:
            started[key] = t
        else:
            heapq.heappush(asks, (t + wait, key))
    assert busiest_second(list(started.values())) == 3
    assert max(started.values()) == pytest.approx(60.0 + 299 / 3, abs=1e-3)


def test_starts_that_did_not_wait_make_the_paced_ones_make_room() -> None:
    pacer = SlotPacer(rate_per_s=4, burst=1)
    assert pacer.wait_for("a", 0.0) == 0.0
    for _ in range(2):  # two writes that could not wait, in the same moment
        pacer.take(0.0)
    # b's slot (0.25) is due, but the rate is used up until 0.75.
    assert pacer.wait_for("b", 0.25) == pytest.approx(0.5)
    assert pacer.wait_for("b", 0.75) == 0.0
    # A flood of them pushes the paced starts back by at most the horizon (1 s), not for ever.
    for _ in range(1000):
        pacer.take(10.0)
    assert pacer.wait_for("c", 10.0) == pytest.approx(1.0)
    assert pacer.wait_for("c", 11.0) == 0.0


def test_waiting_keeps_the_slot_and_order_is_first_come_first_served() -> None:
    pacer = SlotPacer(rate_per_s=2, burst=1)
    assert pacer.wait_for("a", 0.0) == 0.0
    wait_b = pacer.wait_for("b", 0.0)
    wait_c = pacer.wait_for("c", 0.0)
    assert (wait_b, wait_c) == (0.5, 1.0)
    # b asks again early (another pass ran): same slot, not a new one at the back.
    assert pacer.wait_for("b", 0.2) == 0.3
    assert pacer.waiting() == 2
    assert pacer.wait_for("c", 1.0) == 0.0
    # b is late for its slot (0.5) but not before c's start: the two are spaced.
    assert pacer.wait_for("b", 1.0) == 0.5
    assert pacer.wait_for("b", 1.5) == 0.0
    assert pacer.waiting() == 0


def test_forgotten_bot_gives_up_its_slot_and_a_later_ask_queues_again() -> None:
    pacer = SlotPacer(rate_per_s=1, burst=1)
    pacer.wait_for("a", 0.0)
    assert pacer.wait_for("b", 0.0) == 1.0
    pacer.forget("b")
    assert pacer.waiting() == 0
    assert pacer.wait_for("b", 0.0) == 2.0  # its old slot is not handed back out of order


def test_idle_pacer_lends_only_its_burst() -> None:
    pacer = SlotPacer(rate_per_s=5, burst=3)
    pacer.wait_for("warm", 0.0)
    now = 1000.0  # long idle
    waits = [pacer.wait_for(f"b{i}", now) for i in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] > 0 and waits[4] > waits[3]


def test_rate_zero_means_no_pacing() -> None:
    pacer = SlotPacer(rate_per_s=0)
    assert all(pacer.wait_for(i, 0.0) == 0.0 for i in range(100))
    assert pacer.waiting() == 0


def test_concurrent_callers_get_distinct_slots() -> None:
    pacer = SlotPacer(rate_per_s=100, burst=1)
    slots: list[float] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        wait = pacer.wait_for(i, 0.0)
        with lock:
            slots.append(wait)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(round(s, 6) for s in slots)) == 200
