"""A bot whose received-media storage is full (spec.media, issue 24) is Degraded but keeps
running: the phase stays what the session says, and the condition names the reason."""

from __future__ import annotations

from wabot.spec import Phase

from .test_status import cond, derive, pod, report


def test_full_media_storage_degrades_a_connected_bot_without_failing_it() -> None:
    media = {"usedBytes": 1000, "files": 2, "quotaBytes": 4096, "full": True,
             "reason": "VolumeFull"}
    s = derive(p=pod(), r=report("Connected", media=media))
    assert s.phase == Phase.CONNECTED
    c = cond(s, "Degraded")
    assert (c.status, c.reason) == ("True", "MediaVolumeFull")
    assert "without their files" in c.message
    assert cond(s, "Ready").status == "True"


def test_media_with_room_is_not_degraded() -> None:
    media = {"usedBytes": 1000, "files": 2, "quotaBytes": 4096, "full": False}
    s = derive(p=pod(), r=report("Connected", media=media))
    assert cond(s, "Degraded").status == "False"
