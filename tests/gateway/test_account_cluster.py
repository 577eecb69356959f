"""The account's routes through the real gateway (a child process) to a real worker, against
the real API server with the real operator (tests/gateway/conftest.py's world): the session
in any phase, groups only while Connected, another tenant's bot a 404, a group photo's larger
body, and the operator's Event for a session action reported in status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.operator.helpers import eventually
from tests.worker.conftest import dispatch

from .conftest import GLOBEX_KEY, World, call, world

__all__ = ["world"]  # the fixture, imported for pytest
G = "120363000000000042"


def url(w: World, bot: str, tail: str) -> str:
    return f"{w.gateway_url}/v1/bots/{w.ns}/{bot}/{tail}"


def connected(w: World) -> None:
    from neonize.events import ConnectedEv

    dispatch(w.worker.client, ConnectedEv(status=True))
    eventually(lambda: (w.cluster.bot("support").get("status") or {}).get("phase")
               == "Connected", timeout=60, what="support Connected")


@pytest.fixture
def groups_seam(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """The support worker's client answers the group calls as whatsmeow would (neonize's
    protobufs) and says its connection is up; nothing else of it changes."""
    from neonize.proto.Neonize_pb2 import GroupInfo, GroupName
    from neonize.utils import build_jid

    calls: list[tuple[str, Any]] = []
    c = world.worker.client

    def info(*_: Any) -> Any:
        return GroupInfo(JID=build_jid(G, "g.us"), GroupName=GroupName(Name="Team"))

    seams = {
        "get_joined_groups": lambda: [info()],
        "get_group_info": info,
        "set_group_name": lambda jid, name: calls.append(("name", name)),
        "set_group_photo": lambda jid, data: calls.append(("photo", len(data))) or "P1",
    }
    for name, fn in seams.items():
        setattr(c, name, fn)
    monkeypatch.setattr(type(c), "is_connected", property(lambda _self: True))
    yield calls
    for name in seams:
        delattr(c, name)


def test_the_session_through_the_gateway_in_any_phase(world: World) -> None:
    status, _, view = call(url(world, "support", "session"), method="GET")
    assert status == 200 and view["state"] == "Connected"
    # A bot that is not connected: the gateway forwards a session request anyway (its worker
    # here refuses the gateway, being another bot's: what matters is the phase check passed).
    status, _, body = call(url(world, "sleepy", "session/restart"), {})
    assert body["error"] != "bot_not_connected", body
    # Another tenant's bot is a 404, as if missing.
    status, _, body = call(url(world, "support", "session/restart"), {}, key=GLOBEX_KEY)
    assert status == 404
    status, _, body = call(url(world, "support", "session/restart"), {}, idem="gw-restart-1")
    assert status == 202 and body["result"] == "Succeeded", body
    assert body["requestId"] == "gw-restart-1"
    # The worker reports the outcome in status; the operator turns it into one Event.
    from wabot_operator.sessionevents import event_name

    name = event_name("support", "gw-restart-1")

    def event() -> Any:
        try:
            return world.cluster.core.read_namespaced_event(name, world.ns)
        except client.ApiException:
            return None

    ev = eventually(event, timeout=60, what="the operator's Event")
    assert ev.reason == "SessionRestarted" and ev.involved_object.name == "support"
    connected(world)


def test_groups_through_the_gateway(world: World, groups_seam: list[tuple[str, Any]]) -> None:
    status, _, body = call(url(world, "support", "groups"), method="GET")
    assert status == 200 and body["groups"][0]["jid"] == f"{G}@g.us", body
    status, _, body = call(url(world, "support", f"groups/{G}/name"), {"name": "Team 2"})
    assert status == 200, body
    assert groups_seam == [("name", "Team 2")]
    # A JPEG larger than the gateway's usual 64 KiB body: the photo route takes 1 MiB.
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 300_000
    status, _, body = call(url(world, "support", f"groups/{G}/photo"), raw=jpeg)
    assert status == 200, body
    assert groups_seam[-1] == ("photo", len(jpeg))
    status, _, body = call(url(world, "support", f"groups/{G}/photo"),
                           raw=b"\xff\xd8\xff" + b"\x00" * (2 * 1024 * 1024))
    assert status == 413
    # Not connected: 503 with the phase, before the worker is asked.
    status, _, body = call(url(world, "sleepy", f"groups/{G}/name"), {"name": "x"})
    assert status == 503 and body["error"] == "bot_not_connected" and body["phase"]
    status, _, body = call(url(world, "support", "groups"), method="GET", key=GLOBEX_KEY)
    assert status == 404
    assert len(groups_seam) == 2
