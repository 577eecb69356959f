"""Reconnect delays: capped exponential growth, full jitter, never a busy loop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from botworker.backoff import BackoffPolicy

P = BackoffPolicy(base_s=1.0, cap_s=300.0, min_s=0.5)


def test_ceiling_doubles_until_the_cap() -> None:
    assert [P.ceiling(n) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert P.ceiling(10_000) == 300  # no overflow after a week of failures


def test_full_jitter_spans_zero_to_the_ceiling_with_a_floor() -> None:
    assert P.delay(5, 0.0) == 0.5
    assert P.delay(5, 0.5) == 8.0
    assert P.delay(5, 0.999999) < 16.0
    assert P.delay(0, 0.7) == 0.0


def test_the_floor_never_exceeds_a_small_ceiling() -> None:
    tiny = BackoffPolicy(base_s=0.1, cap_s=0.2, min_s=0.5)
    assert tiny.delay(1, 0.0) == 0.1


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_delay_is_always_within_bounds(attempt: int, rand: float) -> None:
    d = P.delay(attempt, rand)
    assert min(P.min_s, P.ceiling(attempt)) <= d <= P.ceiling(attempt) <= P.cap_s


@given(st.floats(min_value=0, max_value=0.999))
def test_distinct_draws_spread_the_fleet(rand: float) -> None:
    assert P.delay(8, rand) == max(P.min_s, 128 * rand)
