"""The Event the operator posts for a bot's reported session action (pure part)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wabot_operator.sessionevents import event_name, session_action_event

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def bot(action: dict[str, Any] | None) -> dict[str, Any]:
    worker: dict[str, Any] = {"state": "LoggedOut", "updatedAt": "2030-01-02T03:04:00Z"}
    if action is not None:
        worker["sessionAction"] = action
    return {"metadata": {"name": "shop", "namespace": "acme", "uid": "u-1"},
            "status": {"worker": worker}}


def test_a_finished_action_is_one_named_event() -> None:
    ev = session_action_event(bot({"requestId": "r-1", "action": "logout", "source": "api",
                                   "result": "Succeeded", "message": "logged out"}), NOW)
    assert ev is not None
    assert ev["metadata"] == {"name": event_name("shop", "r-1"), "namespace": "acme"}
    assert (ev["type"], ev["reason"]) == ("Normal", "SessionLoggedOut")
    assert ev["involvedObject"]["uid"] == "u-1" and ev["involvedObject"]["kind"] == "WhatsAppBot"
    assert "r-1" in ev["message"] and "logged out" in ev["message"]
    assert ev["firstTimestamp"] == "2030-01-02T03:04:05Z"


def test_refusals_are_warnings_and_nothing_is_posted_while_started() -> None:
    ev = session_action_event(bot({"requestId": "r-2", "action": "pairing",
                                   "source": "kubernetes", "result": "Rejected"}), NOW)
    assert ev is not None and (ev["type"], ev["reason"]) == ("Warning", "SessionActionRejected")
    assert session_action_event(bot({"requestId": "r-3", "action": "logout", "source": "api",
                                     "result": "Started"}), NOW) is None
    assert session_action_event(bot(None), NOW) is None
    assert session_action_event({"metadata": {"name": "x", "namespace": "y"}}, NOW) is None


def test_the_name_is_a_valid_object_name_for_any_request_id() -> None:
    for rid in ("r-1", "a" * 255, "ÄÖ ü/../?", ""):
        name = event_name("shop", rid)
        assert len(name) <= 253 and name.startswith("shop.session-")
        assert all(c.isalnum() or c in ".-" for c in name)
    assert event_name("shop", "a") != event_name("shop", "b")
