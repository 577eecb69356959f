"""Retry delays: capped exponential growth, full or equal jitter, never a busy loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botworker.core.backoff import BackoffPolicy

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


EQUAL = BackoffPolicy(base_s=1.0, cap_s=300.0, min_s=0.5, jitter="equal")


def test_equal_jitter_spans_half_the_ceiling_to_the_ceiling() -> None:
    assert EQUAL.delay(1, 0.0) == 0.5 and EQUAL.delay(1, 0.999999) < 1.0
    assert EQUAL.delay(5, 0.0) == 8.0 and EQUAL.delay(5, 0.5) == 12.0
    assert EQUAL.at_cap(0.0) == 150.0 and EQUAL.at_cap(1.0) == 300.0
    assert EQUAL.delay(0, 0.7) == 0.0


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_equal_jitter_never_comes_early_nor_beyond_the_cap(attempt: int, rand: float) -> None:
    d = EQUAL.delay(attempt, rand)
    assert max(EQUAL.min_s, EQUAL.ceiling(attempt) / 2) <= d <= EQUAL.ceiling(attempt)
    assert d <= EQUAL.cap_s


def test_expected_delays() -> None:
    # Full jitter with a 0.5 s floor: half the draws are floored to 0.5 s.
    assert P.expected(1) == 0.625
    assert P.expected(10_000) == pytest.approx(150.0, abs=0.001)
    assert EQUAL.expected(1) == 0.75
    assert EQUAL.expected(10_000) == 225.0
    assert EQUAL.expected(0) == 0.0


@given(st.integers(min_value=1, max_value=12), st.sampled_from([P, EQUAL]))
def test_expected_is_the_mean_of_the_draws(attempt: int, policy: BackoffPolicy) -> None:
    n = 20_000
    mean = sum(policy.delay(attempt, (i + 0.5) / n) for i in range(n)) / n
    assert abs(mean - policy.expected(attempt)) <= 1e-3 * policy.ceiling(attempt)
