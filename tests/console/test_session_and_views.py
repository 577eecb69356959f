"""The console's pure parts: session cookies and CSRF tokens, and the words a page shows."""

from __future__ import annotations

import pytest

from gateway.console.settings import ConsoleSettings
from wabot.console import views
from wabot.console.session import Signer, Viewer
from wabot.settings import ConfigError

SECRET = "x" * 40


def test_a_cookie_names_its_viewer_until_it_expires() -> None:
    signer = Signer(SECRET, 3600)
    cookie, signed = signer.issue(Viewer("user", "alice", ("devs",), "u1"), now=1000.0)
    back = signer.check(cookie, now=1001.0)
    assert back is not None and (back.kind, back.name, back.groups) == ("user", "alice",
                                                                        ("devs",))
    assert back.sid == signed.sid and back.expires == 4600.0
    assert signer.check(cookie, now=4600.0) is None


def test_another_secret_or_an_edit_makes_a_cookie_worthless() -> None:
    cookie, _ = Signer(SECRET, 60).issue(Viewer("tenant", "acme", key_hash="ab" * 16))
    assert Signer("y" * 40, 60).check(cookie) is None
    body, mac = cookie.split(".")
    assert Signer(SECRET, 60).check(body[:-1] + ("A" if body[-1] != "A" else "B") + "." +
                                    mac) is None
    for junk in ("", ".", "a.b", "x" * 9000):
        assert Signer(SECRET, 60).check(junk) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    signer = Signer(SECRET, 60)
    _, one = signer.issue(Viewer("tenant", "acme"))
    _, two = signer.issue(Viewer("tenant", "acme"))
    assert signer.csrf_ok(one, signer.csrf(one))
    assert not signer.csrf_ok(one, signer.csrf(two))
    assert not signer.csrf_ok(one, None) and not signer.csrf_ok(one, "")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Signer("short", 60)
    with pytest.raises(ConfigError, match="at least 32"):
        ConsoleSettings.from_env({"WABOT_GATEWAY_CONSOLE": "true",
                                  "WABOT_GATEWAY_CONSOLE_SECRET": "short"})
    assert not ConsoleSettings.from_env({}).enabled


def _bot(phase: str | None, worker: dict[str, object] | None = None,
         **spec: object) -> dict[str, object]:
    return {"metadata": {"namespace": "n", "name": "b"},
            "spec": {"serverName": "acme", **spec},
            "status": {"phase": phase, "worker": worker or {}}}


@pytest.mark.parametrize(("obj", "words"), [
    (_bot("Connected", {"state": "Connected", "account": {"jid": "1555@s.whatsapp.net"}}),
     "Connected to WhatsApp as 1555@s.whatsapp.net."),
    (_bot("Disconnected", {"state": "Disconnected", "lastError": "stream error"}),
     "This bot is not connected: it is waiting for WhatsApp; last error: stream error."),
    (_bot("Pairing", {"state": "Pairing", "pairing": {"method": "code", "code": "ABCD-1234",
                                                      "expiresAt": "2026-12-07T10:00:00Z"}}),
     "type the pairing code ABCD-1234 in WhatsApp (Linked devices, Link with phone number) "
     "before 10:00:00 UTC"),
    (_bot("Running", suspend=True), "This bot is suspended"),
    (_bot("LoggedOut"), "The phone unlinked this bot: it must be paired again."),
    (_bot(None), "No status yet"),
])
def test_summaries_say_what_is_going_on(obj: dict[str, object], words: str) -> None:
    assert words in views.summary(obj)


def test_a_row_never_carries_the_qr_payload_or_the_spec() -> None:
    obj = _bot("Pairing", {"state": "Pairing", "pairing": {"method": "qr", "qr": "2@SECRET"}},
               webhook={"url": "https://hooks.example/x", "secretRef": {"name": "hook-key"}})
    for view in (views.row(obj), views.detail(obj)):
        text = repr(view)
        assert "2@SECRET" not in text and "hooks.example" not in text and "hook-key" not in text
        assert view["qr"] == views.qr_version("2@SECRET")


def test_the_annotations_are_the_ones_the_worker_watches() -> None:
    from botworker.runtime import session_control
    from gateway.console import actions

    assert actions.ANNOTATION_ACTION == session_control.ANNOTATION_ACTION
    assert actions.ANNOTATION_ID == session_control.ANNOTATION_ID
    assert set(actions.SESSION_WORDS) == set(session_control.ACTIONS)


def _worker(activity: object) -> dict[str, object]:
    return {"metadata": {"namespace": "n", "name": "b"},
            "status": {"phase": "Connected", "worker": {"state": "Connected",
                                                       "activity": activity}}}


@pytest.mark.parametrize(("activity", "state", "words", "depth"), [
    (None, "unknown", "not reported yet: the worker writes it at most once a minute", None),
    ({"messagesInLastHour": 4, "messagesOutLastHour": 2, "since": "2026-01-01T12:00:00Z"},
     "none", "no webhook configured", None),
    ({"messagesInLastHour": 4, "messagesOutLastHour": 2, "since": "2026-01-01T12:00:00Z",
      "webhook": {"queueDepth": 7, "failing": True, "failingSince": "2026-01-01T12:03:09Z",
                  "lastFailedAt": "2026-01-01T12:05:00Z", "lastFailure": "HTTP 503"}},
     "failing", "failing since 12:03:09 UTC: HTTP 503", 7),
    ({"messagesInLastHour": 4, "messagesOutLastHour": 2, "since": "2026-01-01T12:00:00Z",
      "webhook": {"queueDepth": 0, "failing": False,
                  "lastDeliveredAt": "2026-01-01T12:06:00Z"}},
     "delivering", "delivering", 0),
])
def test_the_webhook_state_in_plain_words(activity: object, state: str, words: str,
                                          depth: int | None) -> None:
    d = views.detail(_worker(activity))
    assert (d["webhook"]["state"], d["webhook"]["words"], d["webhook"]["queueDepth"]) == (
        state, words, depth)
    row = views.row(_worker(activity))
    counted = activity is not None
    assert (row["messagesIn"], row["messagesOut"]) == ((4, 2) if counted else (None, None))


def test_counts_that_are_not_numbers_are_not_reported() -> None:
    row = views.row(_worker({"messagesInLastHour": "9", "messagesOutLastHour": True}))
    assert (row["messagesIn"], row["messagesOut"]) == (None, None)
