"""The worker's connection state machine: the rules that keep one live session per bot."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botworker.core import lifecycle as lc
from botworker.core.backoff import BackoffPolicy
from wabot.spec import WorkerState

POLICY = lc.Policy(backoff=BackoffPolicy(base_s=1.0, cap_s=60.0, min_s=0.5), watchdog_s=90.0)


def step(s: lc.ConnState, ev: lc.Event, now: float = 1000.0, rand: float = 0.5):  # type: ignore[no-untyped-def]
    return lc.transition(s, ev, now, rand, POLICY)


def kinds(actions: list[lc.Action]) -> list[type]:
    return [type(a) for a in actions]


def connected() -> lc.ConnState:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s, _ = step(s, lc.Connected(lc.Account("4915@s.whatsapp.net", "Shop")))
    return s


def test_no_session_without_the_lease() -> None:
    s = lc.ConnState()
    s2, actions = step(s, lc.Tick())
    assert lc.StartSession not in kinds(actions)
    assert not s2.session_running


def test_acquiring_the_lease_starts_the_session() -> None:
    s, actions = step(lc.ConnState(), lc.LeaseAcquired())
    assert kinds(actions) == [lc.StartSession, lc.Publish]
    assert s.state is WorkerState.CONNECTING and s.session_running
    assert s.watchdog_at == 1000.0 + POLICY.watchdog_s


def test_connected_is_ready_and_resets_failures() -> None:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s = replace(s, failures=4, last_error="boom")
    s, actions = step(s, lc.Connected(lc.Account("1@s.whatsapp.net")), now=1234.0)
    assert s.ready and s.failures == 0 and s.last_error is None
    assert s.last_connected_at == 1234.0 and s.watchdog_at is None
    assert kinds(actions) == [lc.Publish]


def test_failed_session_retries_with_backoff() -> None:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s, actions = step(s, lc.SessionEnded("NeonizeError: dial"), now=1000.0, rand=0.5)
    assert s.state is WorkerState.DISCONNECTED and not s.session_running
    assert s.retry_at == 1000.0 + POLICY.backoff.delay(1, 0.5)
    assert s.last_error == "NeonizeError: dial"
    # Too early: nothing happens.
    s2, actions = step(s, lc.Tick(), now=1000.1)
    assert actions == [] and not s2.session_running
    # Due: a new session, counted as a reconnect.
    s3, actions = step(s, lc.Tick(), now=s.retry_at or 0)
    assert lc.StartSession in kinds(actions) and s3.reconnects == 1


def test_backoff_grows_with_consecutive_failures() -> None:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    delays = []
    now = 1000.0
    for _ in range(8):
        s, _ = step(s, lc.SessionEnded("x"), now=now, rand=0.999)
        assert s.retry_at is not None
        delays.append(s.retry_at - now)
        now = s.retry_at
        s, _ = step(s, lc.Tick(), now=now)
    assert delays == sorted(delays)
    assert delays[-1] <= POLICY.backoff.cap_s


# --- the default policy: new bots, restarted bots, drops (what a fleet restart relies on) ---

DEFAULT = lc.DEFAULT_POLICY


def test_a_new_bot_dials_as_soon_as_it_holds_the_lease() -> None:
    """No linked session on the volume: someone waits for the QR, no start-up delay."""
    s, actions = lc.transition(lc.ConnState(), lc.LeaseAcquired(), 1000.0, 0.99, DEFAULT)
    assert kinds(actions) == [lc.StartSession, lc.Publish] and s.session_running


def test_a_restarted_bot_drawing_zero_dials_at_once() -> None:
    s, actions = lc.transition(lc.ConnState(resuming=True), lc.LeaseAcquired(), 1000.0, 0.0,
                               DEFAULT)
    assert lc.StartSession in kinds(actions) and s.session_running


@pytest.mark.parametrize("rand", [0.001, 0.3, 0.999])
def test_a_restarted_bot_dials_within_its_jitter_window(rand: float) -> None:
    s, actions = lc.transition(lc.ConnState(resuming=True), lc.LeaseAcquired(), 1000.0, rand,
                               DEFAULT)
    due = 1000.0 + rand * DEFAULT.resume_jitter_s
    assert s.retry_at == due <= 1000.0 + DEFAULT.resume_jitter_s == 1020.0
    assert s.next_wakeup() == due and s.lease_held and not s.session_running
    assert lc.StartSession not in kinds(actions) and lc.Publish in kinds(actions)
    # The Lease verdict again (a renewal that looked like an acquisition) does not postpone it.
    again, actions = lc.transition(s, lc.LeaseAcquired(), (1000.0 + due) / 2, 0.9999, DEFAULT)
    assert again.retry_at == due and lc.StartSession not in kinds(actions)
    _early, actions = lc.transition(s, lc.Tick(), due - 0.01, 0.5, DEFAULT)
    assert lc.StartSession not in kinds(actions)
    s, actions = lc.transition(s, lc.Tick(), due, 0.5, DEFAULT)
    assert lc.StartSession in kinds(actions) and s.state is WorkerState.CONNECTING


def test_a_restarted_bot_that_has_not_connected_retries_at_the_cap_then_quickly() -> None:
    """During a fleet restart in a WhatsApp outage a resuming worker redials after
    [cap/2, cap]; once it has connected, a drop is retried within a second again."""
    cap = DEFAULT.backoff.cap_s
    s, _ = lc.transition(lc.ConnState(resuming=True), lc.LeaseAcquired(), 0.0, 0.0, DEFAULT)
    now = 0.0
    for rand in (0.0, 0.5, 0.999):
        s, _ = lc.transition(s, lc.SessionEnded("dial failed"), now, rand, DEFAULT)
        assert s.retry_at is not None and cap / 2 <= s.retry_at - now <= cap
        now = s.retry_at
        s, actions = lc.transition(s, lc.Tick(), now, 0.5, DEFAULT)
        assert lc.StartSession in kinds(actions)
    s, _ = lc.transition(s, lc.Connected(None), now, 0.5, DEFAULT)
    assert not s.resuming and s.failures == 0
    s, _ = lc.transition(s, lc.SessionEnded("stream error"), now + 60, 0.999, DEFAULT)
    assert s.retry_at is not None and 0.5 <= s.retry_at - (now + 60) < 1.0


def test_a_dropped_bot_retries_with_equal_jitter_within_floor_and_cap() -> None:
    s, _ = lc.transition(lc.ConnState(), lc.LeaseAcquired(), 0.0, 0.5, DEFAULT)
    b = DEFAULT.backoff
    now = 0.0
    for attempt in range(1, 16):
        for rand in (0.0, 0.999):
            ended, _ = lc.transition(s, lc.SessionEnded("x"), now, rand, DEFAULT)
            assert ended.retry_at is not None
            delay = ended.retry_at - now
            assert b.min_s <= delay <= b.cap_s
            # Never early (up to the rounding of `retry_at - now`).
            assert b.ceiling(attempt) / 2 - 1e-9 <= delay <= b.ceiling(attempt)
        now = ended.retry_at
        s, _ = lc.transition(ended, lc.Tick(), now, 0.5, DEFAULT)
    assert b.delay(1, 0.0) == 0.5 and b.delay(1, 0.999) < 1.0  # the first retry: within 1 s


def test_a_temporary_ban_of_a_restarted_bot_waits_the_given_time_too() -> None:
    s, _ = lc.transition(lc.ConnState(resuming=True), lc.LeaseAcquired(), 0.0, 0.0, DEFAULT)
    s, _ = lc.transition(s, lc.TemporaryBan("x", 600), 10.0, 0.0, DEFAULT)
    s, _ = lc.transition(s, lc.SessionEnded(None), 11.0, 0.9, DEFAULT)
    assert s.state is WorkerState.TEMPORARY_BAN and s.retry_at == 610.0


def test_disconnect_waits_for_whatsmeow_then_watchdog_restarts() -> None:
    s = connected()
    s, actions = step(s, lc.Disconnected(), now=2000.0)
    assert s.state is WorkerState.DISCONNECTED and s.reconnects == 1
    assert lc.StopSession not in kinds(actions)
    assert s.watchdog_at == 2000.0 + POLICY.watchdog_s
    # whatsmeow heals it in time: nothing else happens.
    healed, _ = step(s, lc.Connected(None))
    assert healed.ready and healed.account is not None  # the account is kept
    # It does not: the watchdog stops the session, and the end of it schedules a redial.
    s, actions = step(s, lc.Tick(), now=2000.0 + POLICY.watchdog_s)
    assert kinds(actions) == [lc.StopSession, lc.Publish]
    s, _ = step(s, lc.SessionEnded(None), now=2100.0)
    assert s.retry_at is not None and s.retry_at > 2100.0


def test_logged_out_parks_and_never_reconnects() -> None:
    s = connected()
    s, actions = step(s, lc.LoggedOut("LOGGED_OUT"))
    assert s.state is WorkerState.LOGGED_OUT and s.parked and s.account is None
    assert kinds(actions) == [lc.StopSession, lc.Publish]
    s, _ = step(s, lc.SessionEnded(None))
    for ev in (lc.Tick(), lc.Connected(None), lc.QrIssued("x", 1.0), lc.Disconnected()):
        s, actions = step(s, ev, now=10**9)
        assert lc.StartSession not in kinds(actions)
    assert s.state is WorkerState.LOGGED_OUT


def test_stream_replaced_stops_and_does_not_fight() -> None:
    s = connected()
    s, actions = step(s, lc.StreamReplaced())
    assert s.state is WorkerState.STREAM_REPLACED and s.parked
    assert kinds(actions) == [lc.StopSession, lc.Publish]
    s, _ = step(s, lc.SessionEnded(None))
    s, actions = step(s, lc.Tick(), now=10**9)
    assert actions == []


def test_temporary_ban_waits_the_given_time() -> None:
    s = connected()
    s, actions = step(s, lc.TemporaryBan("BLOCKED_BY_USERS", 7200), now=5000.0, rand=0.0)
    assert s.state is WorkerState.TEMPORARY_BAN and s.retry_at == 5000.0 + 7200
    assert kinds(actions) == [lc.StopSession, lc.Publish]
    s, _ = step(s, lc.SessionEnded(None), now=5001.0)
    assert s.state is WorkerState.TEMPORARY_BAN and s.retry_at == 5000.0 + 7200
    _s2, actions = step(s, lc.Tick(), now=5000.0 + 7199)
    assert lc.StartSession not in kinds(actions)
    s3, actions = step(s, lc.Tick(), now=5000.0 + 7200)
    assert lc.StartSession in kinds(actions) and s3.state is WorkerState.CONNECTING


def test_losing_the_lease_stops_the_session_and_waits_for_it_again() -> None:
    s = connected()
    s, actions = step(s, lc.LeaseLost("renew failed"))
    assert not s.ready and kinds(actions) == [lc.StopSession, lc.Publish]
    s, _ = step(s, lc.SessionEnded(None))
    s, actions = step(s, lc.Tick(), now=10**9)
    assert lc.StartSession not in kinds(actions)
    s, actions = step(s, lc.LeaseAcquired())
    assert lc.StartSession in kinds(actions)


def test_connected_without_the_lease_is_stopped_at_once() -> None:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s, actions = step(s, lc.LeaseLost("gone"))
    assert lc.StopSession in kinds(actions) and s.stop_requested
    # That stop reached neonize before connect() was under way, so it was lost, and the dial
    # succeeds anyway: the session is stopped again, not left up without the Lease.
    s, actions = step(s, lc.Connected(None))
    assert not s.ready and lc.StopSession in kinds(actions)


def test_qr_and_code_pairing_publish_and_arm_the_watchdog() -> None:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s, _actions = step(s, lc.QrIssued("2@abc", 1060.0))
    assert s.state is WorkerState.PAIRING and s.pairing == lc.Pairing("qr", "2@abc", 1060.0)
    assert s.watchdog_at == 1060.0 + POLICY.pairing_grace_s
    s, _ = step(s, lc.PairCodeIssued("ABCD-EFGH", 1180.0))
    assert s.pairing == lc.Pairing("code", "ABCD-EFGH", 1180.0)
    report = lc.to_report(s, "pod-1", 1000.0)
    assert report.pairing is not None and report.pairing.code == "ABCD-EFGH"
    assert report.pairing.qr is None and report.pod_name == "pod-1"


def test_shutdown_stops_the_session_then_finishes() -> None:
    s = connected()
    s, actions = step(s, lc.Shutdown())
    assert kinds(actions) == [lc.StopSession]
    s, actions = step(s, lc.Disconnected())  # the teardown's own events change nothing
    assert actions == []
    s, actions = step(s, lc.SessionEnded(None))
    assert s.state is WorkerState.STOPPED and s.finished
    assert kinds(actions) == [lc.Publish, lc.Finished]


def test_shutdown_without_a_session_finishes_at_once() -> None:
    s, actions = step(lc.ConnState(), lc.Shutdown())
    assert s.finished and kinds(actions) == [lc.Publish, lc.Finished]


def test_report_is_valid_and_never_too_long() -> None:
    s = replace(connected(), last_error="x" * 5000)
    report = lc.to_report(s, None, 1000.0)
    assert report.state is WorkerState.CONNECTED
    assert report.last_error is not None and len(report.last_error) == 1024
    assert report.account is not None and report.account.push_name == "Shop"


EVENTS = st.one_of(
    st.just(lc.LeaseAcquired()),
    st.builds(lc.LeaseLost, st.just("x")),
    st.builds(lc.SessionEnded, st.none() | st.just("err")),
    st.builds(lc.QrIssued, st.just("qr"), st.floats(0, 10**6)),
    st.builds(lc.PairCodeIssued, st.just("code"), st.floats(0, 10**6)),
    st.builds(lc.Connected, st.none()),
    st.just(lc.Disconnected()),
    st.builds(lc.ConnectFailure, st.just("GENERIC")),
    st.builds(lc.LoggedOut, st.just("LOGGED_OUT")),
    st.just(lc.StreamReplaced()),
    st.builds(lc.TemporaryBan, st.just("x"), st.floats(0, 10**5)),
    st.just(lc.Tick()),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(EVENTS, st.floats(0, 100), st.floats(0, 0.999)), max_size=40),
       st.booleans())
def test_invariants_hold_for_any_event_sequence(
    seq: list[tuple[lc.Event, float, float]], resuming: bool,
) -> None:
    """Whatever happens, to a new bot or a restarted one: no session is started without the
    Lease, never two at once, never after a park, and being ready implies connected + Lease."""
    s = lc.ConnState(resuming=resuming)
    now = 0.0
    running = False
    for ev, dt, rand in seq:
        now += dt
        s, actions = lc.transition(s, ev, now, rand, POLICY)
        for a in actions:
            if isinstance(a, lc.StartSession):
                assert s.lease_held and not s.parked
                assert not running, "two sessions at once"
                running = True
        if isinstance(ev, lc.SessionEnded):
            running = False
        assert s.session_running == running or isinstance(ev, lc.SessionEnded)
        if s.ready:
            assert s.state is WorkerState.CONNECTED and s.lease_held
        if s.parked:
            assert s.state in (WorkerState.LOGGED_OUT, WorkerState.STREAM_REPLACED)


@pytest.mark.parametrize("ev", [lc.LoggedOut("x"), lc.StreamReplaced()])
def test_parking_without_a_running_session_stops_nothing(ev: lc.Event) -> None:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s, _ = step(s, lc.SessionEnded("x"))
    s, actions = step(s, ev)
    assert lc.StopSession not in kinds(actions) and s.parked


def test_a_configuration_problem_parks_the_worker_before_any_session() -> None:
    s, acts = step(lc.ConnState(), lc.ConfigBlocked("InvalidProxy", "invalid proxy URL"))
    assert kinds(acts) == [lc.Publish]
    assert s.parked and s.error_reason == "InvalidProxy"
    s, acts = step(s, lc.LeaseAcquired())
    assert lc.StartSession not in kinds(acts) and not s.session_running
    s, acts = step(s, lc.Tick(), now=10_000.0)
    assert lc.StartSession not in kinds(acts)
    rep = lc.to_report(s, "pod-1", 1000.0)
    assert rep.error_reason == "InvalidProxy" and rep.last_error == "invalid proxy URL"
    s, _ = step(s, lc.LeaseLost("expired"))
    assert s.last_error == "invalid proxy URL"  # the cause stays visible
