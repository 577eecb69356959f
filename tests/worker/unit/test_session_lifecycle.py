"""Session control in the connection rules: a restart asked for by a human (the session API or
the WhatsAppBot's annotation) replaces the session at once, never two at a time."""

from __future__ import annotations

from dataclasses import replace

from botworker.core import lifecycle as lc
from botworker.core.backoff import BackoffPolicy
from wabot.spec import WorkerState

POLICY = lc.Policy(backoff=BackoffPolicy(base_s=1.0, cap_s=60.0, min_s=0.5), watchdog_s=90.0)


def step(s: lc.ConnState, ev: lc.Event, now: float = 1000.0) -> tuple[lc.ConnState, list[type]]:
    s2, actions = lc.transition(s, ev, now, 0.5, POLICY)
    return s2, [type(a) for a in actions]


def connected() -> lc.ConnState:
    s, _ = step(lc.ConnState(), lc.LeaseAcquired())
    s, _ = step(s, lc.Connected(lc.Account("4915@s.whatsapp.net", "Shop")))
    return s


def test_restart_stops_the_session_then_starts_the_next_at_once() -> None:
    s, actions = step(connected(), lc.RestartRequested("api"))
    assert actions == [lc.StopSession, lc.Publish]
    assert s.state is WorkerState.CONNECTING and not s.ready
    assert s.session_running and s.sessions_started == 1  # the old one is still ending
    # Nothing starts a second session while the first is still up.
    s, actions = step(s, lc.Tick())
    assert lc.StartSession not in actions
    s, actions = step(s, lc.SessionEnded(None), now=1001.0)
    assert actions == [lc.StartSession, lc.Publish]
    assert s.sessions_started == 2 and s.failures == 0 and not s.restart_now


def test_restart_unparks_a_logged_out_worker() -> None:
    s, _ = step(connected(), lc.LoggedOut("LOGGED_OUT"))
    s, _ = step(s, lc.SessionEnded(None))
    assert s.parked and s.state is WorkerState.LOGGED_OUT
    s, actions = step(s, lc.RestartRequested("pairing"))
    assert actions == [lc.StartSession, lc.Publish]
    assert not s.parked and s.state is WorkerState.CONNECTING


def test_restart_is_refused_during_a_ban_a_config_problem_or_shutdown() -> None:
    banned, _ = step(connected(), lc.TemporaryBan("X", 3600))
    blocked, _ = step(connected(), lc.ConfigBlocked("InvalidProxy", "bad proxy"))
    stopping, _ = step(connected(), lc.Shutdown())
    for s in (banned, blocked, stopping):
        assert step(s, lc.RestartRequested("api")) == (s, [])


def test_restart_waits_for_the_lease() -> None:
    s = replace(lc.ConnState(), state=WorkerState.DISCONNECTED)
    s, actions = step(s, lc.RestartRequested("api"))
    assert actions == [lc.Publish] and not s.session_running


def test_a_second_restart_while_stopping_does_not_stop_twice() -> None:
    s, _ = step(connected(), lc.RestartRequested("api"))
    s, actions = step(s, lc.RestartRequested("api"))
    assert actions == [lc.Publish]
    s, actions = step(s, lc.SessionEnded(None))
    assert actions == [lc.StartSession, lc.Publish]
