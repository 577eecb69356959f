"""The supervisor's decisions, without processes: what a user relies on when a bot crashes,
hangs, or is stopped and restarted by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.policy import (
    Action,
    RestartPolicy,
    Slot,
    State,
    StopReason,
    exited,
    plan,
    probed,
    restart,
    started,
    terminating,
    want,
)

P = RestartPolicy(base_s=1.0, cap_s=60.0, stable_after_s=60.0, grace_s=10.0,
                  liveness_failures=3, liveness_initial_delay_s=30.0)


def running(at: float = 0.0, pid: int = 100) -> Slot:
    return started(Slot(), pid, at)


def test_a_new_bot_is_started() -> None:
    assert plan(Slot(), 0.0, P) is Action.START


def test_delay_grows_exponentially_and_is_capped() -> None:
    ceilings = [P.ceiling(n) for n in range(1, 10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert P.ceiling(10_000) == 60.0  # no overflow after a long outage


@given(failures=st.integers(min_value=1, max_value=200), rand=st.floats(0.0, 1.0))
def test_delay_is_jittered_within_half_ceiling_and_ceiling(failures: int, rand: float) -> None:
    d = P.delay(failures, rand)
    assert P.ceiling(failures) / 2 <= d <= P.ceiling(failures)


def test_jitter_spreads_bots_that_crash_together() -> None:
    assert P.delay(5, 0.0) != P.delay(5, 0.9)


def test_a_crash_backs_off_then_restarts() -> None:
    s = exited(running(0.0), 1, now=5.0, rand=0.5, policy=P)
    assert s.state is State.BACKOFF and s.restarts == 1 and s.last_exit_code == 1
    assert s.pid is None
    assert plan(s, 5.0, P) is Action.NONE
    assert plan(s, s.retry_at or 0.0, P) is Action.START


def test_quick_crashes_in_a_row_back_off_longer() -> None:
    s = running(0.0)
    delays = []
    now = 0.0
    for _ in range(5):
        s = exited(s, 1, now=now + 1, rand=1.0, policy=P)
        delays.append((s.retry_at or 0) - (now + 1))
        now = s.retry_at or 0
        s = started(s, 100, now)
    assert delays == [1, 2, 4, 8, 16]
    assert s.restarts == 5


def test_a_crash_after_a_stable_run_starts_the_count_again() -> None:
    s = replace(running(0.0), failures=6)
    s = exited(s, 1, now=3600.0, rand=1.0, policy=P)
    assert s.failures == 1 and (s.retry_at or 0) - 3600.0 == 1.0


def test_stop_is_sigterm_then_sigkill_after_grace() -> None:
    s = want(running(0.0), False)
    assert plan(s, 1.0, P) is Action.TERMINATE
    s = terminating(s, 1.0, P)
    assert s.state is State.STOPPING and s.stop_reason is StopReason.STOP
    assert plan(s, 5.0, P) is Action.NONE
    assert plan(s, 11.0, P) is Action.KILL
    s = exited(s, -15, 12.0, 0.5, P)
    assert s.state is State.STOPPED and s.restarts == 0
    assert plan(s, 100.0, P) is Action.NONE  # a stopped bot stays stopped


def test_a_stopped_bot_starts_again_on_request() -> None:
    s = exited(terminating(want(running(), False), 1.0, P), 0, 2.0, 0.5, P)
    s = want(s, True)
    assert s.state is State.PENDING and plan(s, 3.0, P) is Action.START


def test_requested_restart_is_immediate_without_backoff() -> None:
    s = restart(running(0.0), 1.0)
    assert plan(s, 1.0, P) is Action.TERMINATE
    s = terminating(s, 1.0, P)
    assert s.stop_reason is StopReason.RESTART
    s = exited(s, 0, 2.0, 0.5, P)
    assert s.state is State.PENDING and s.restarts == 1
    assert plan(s, 2.0, P) is Action.START


def test_restart_of_a_bot_in_backoff_starts_it_now() -> None:
    s = exited(running(0.0), 1, 1.0, 1.0, P)
    s = restart(s, 1.2)
    assert plan(s, 1.2, P) is Action.START


def test_stopping_a_bot_in_backoff_cancels_the_restart() -> None:
    s = want(exited(running(0.0), 1, 1.0, 1.0, P), False)
    assert s.state is State.STOPPED and plan(s, 1000.0, P) is Action.NONE


def test_a_bot_exiting_on_its_own_while_unwanted_is_not_restarted() -> None:
    s = want(running(0.0), False)
    s = exited(s, 0, 1.0, 0.5, P)
    assert s.state is State.STOPPED


def test_liveness_failures_restart_after_threshold_but_not_in_initial_delay() -> None:
    s = running(0.0)
    for t in (5.0, 10.0, 15.0, 20.0):  # still starting up: not counted
        s = probed(s, False, t, P)
    assert s.live_failures == 0 and s.live is False
    for t in (31.0, 41.0):
        s = probed(s, False, t, P)
    assert plan(s, 41.0, P) is Action.NONE
    s = probed(s, True, 45.0, P)  # one success resets the count
    assert s.live and s.live_failures == 0
    for t in (51.0, 61.0, 71.0):
        s = probed(s, False, t, P)
    assert plan(s, 71.0, P) is Action.TERMINATE
    s = terminating(s, 71.0, P)
    assert s.stop_reason is StopReason.LIVENESS
    s = exited(s, -15, 72.0, 1.0, P)
    assert s.state is State.BACKOFF and s.restarts == 1


def test_probe_of_a_process_that_is_not_running_changes_nothing() -> None:
    s = exited(running(0.0), 1, 1.0, 0.5, P)
    assert probed(s, False, 100.0, P) == s


@pytest.mark.parametrize("state", list(State))
def test_unwanted_bots_never_start(state: State) -> None:
    s = Slot(desired=False, state=state, retry_at=0.0)
    assert plan(s, 1e9, P) is not Action.START
