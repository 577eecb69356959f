"""What the fleet console shows of a bot (fleet.console.bot_object through the shared plain-word
views): pure, no processes. The browser tests (tests/console/test_fleet_console.py) cover the
same path end to end; these pin the cases that are slow to reach there."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.console import bot_object
from fleet.endpoint import BotView
from fleet.policy import State
from wabot.console import views

QR = "2@ref,noise,identity,adv"


def view(state: State = State.RUNNING, **kw: Any) -> BotView:
    fields: dict[str, Any] = dict(
        name="alpha", state=state, desired=True, pid=42 if state is State.RUNNING else None,
        port=40001 if state is State.RUNNING else None, restarts=0, last_exit_code=None,
        live=True, ready=False, server_name="acme", bot_id="alpha", suspended=False,
        started_at=None)
    fields.update(kw)
    return BotView(**fields)


@pytest.mark.parametrize(("state", "phase"), [
    ("Pairing", "Pairing"), ("Connected", "Connected"), ("LoggedOut", "LoggedOut"),
    ("StreamReplaced", "Disconnected"), ("Starting", "Connecting"),
    ("SomethingNew", "Connecting")])
def test_the_phase_is_the_workers_state_as_the_operator_names_it(state: str, phase: str) -> None:
    row = views.row(bot_object("local", view(), {"state": state}))
    assert row["phase"] == phase
    assert (row["namespace"], row["name"], row["tenant"]) == ("local", "alpha", "acme")


def test_a_pairing_bot_shows_its_qr_version_never_the_payload() -> None:
    session = {"state": "Pairing", "pairing": {"method": "qr", "qr": QR}}
    detail = views.detail(bot_object("local", view(), session))
    assert detail["qr"] == views.qr_version(QR)
    assert QR not in repr(detail)
    assert "scan the QR code" in detail["summary"]


def test_a_stopped_or_suspended_bot_is_suspended_and_keeps_no_old_qr() -> None:
    session = {"state": "Pairing", "pairing": {"method": "qr", "qr": QR}}
    for v in (view(State.STOPPED, desired=False), view(suspended=True)):
        row = views.row(bot_object("local", v, session if v.state is State.RUNNING else None))
        assert row["phase"] == "Suspended" and row["suspended"]
    # A session reported by a process that has since stopped is not shown.
    row = views.row(bot_object("local", view(State.STOPPED, desired=False), session))
    assert row["qr"] is None


def test_a_crashing_worker_says_so_in_plain_words() -> None:
    row = views.row(bot_object("local", view(State.BACKOFF, last_exit_code=3, restarts=2),
                               None))
    assert row["phase"] == "Disconnected" and row["restarts"] == 2
    assert "exited with code 3" in row["summary"]


def test_a_starting_worker_is_pending_with_the_reason() -> None:
    row = views.row(bot_object("local", view(State.PENDING), None))
    assert row["phase"] == "Pending" and "starting" in row["summary"]
