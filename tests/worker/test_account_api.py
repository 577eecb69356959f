"""Groups, contacts and presence through the worker's API: each operation reaches neonize's
client method that would talk to WhatsApp (the seam: answered with neonize's own protobufs
from AccountWorld), with the API's checks in front of it: 422 for bad input, 404 for a group
that is not the bot's, 403 when the bot is not an admin, 429 over the rate limit, 503 when not
connected; counted by operation and result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from wabot.spec import WhatsAppBotSpec

from .account_client import OWN, AccountHarness, AccountWorld, Group, make_account_worker
from .test_session_control import TOKEN, call

__all__ = ["make_account_worker"]
Make = Callable[..., AccountHarness]
G = "120363000000000042"
ALICE, BOB, CAROL = "15550001111", "15550002222", "15550003333"


def world() -> AccountWorld:
    w = AccountWorld(on_whatsapp={ALICE, BOB, CAROL})
    w.groups[G] = Group(G, "Team", participants={OWN: "admin", ALICE: "", BOB: ""})
    w.groups["120363000000000077"] = Group("120363000000000077", "Not ours",
                                           participants={CAROL: "super"})
    w.groups["120363000000000088"] = Group("120363000000000088", "Member only",
                                           participants={OWN: "", CAROL: "super"})
    w.lids = {ALICE: "98765432101234"}
    return w


@pytest.fixture
def api(make_account_worker: Make) -> Callable[..., AccountHarness]:
    def make(spec: WhatsAppBotSpec | None = None, **kw: Any) -> AccountHarness:
        h = make_account_worker(spec, env={"WABOT_API_TOKEN": TOKEN}, world=world(), **kw)
        # The linked account, as get_me() reports it once connected.
        h.worker.connection.events.own_user = OWN
        return h
    return make


def test_groups_list_info_and_create(api: Callable[..., AccountHarness]) -> None:
    h = api()
    status, _, body = call(h, "GET", "/v1/groups")
    assert status == 200
    assert sorted(g["name"] for g in body["groups"]) == ["Member only", "Team"]
    status, _, info = call(h, "GET", f"/v1/groups/{G}@g.us")
    assert status == 200 and info["jid"] == f"{G}@g.us" and info["size"] == 3
    me = next(p for p in info["participants"] if p["jid"].startswith(OWN))
    assert me["isAdmin"] and not me["isSuperAdmin"]
    people = [ALICE, f"+{BOB}", f"{ALICE}@s.whatsapp.net"]
    status, _, made = call(h, "POST", "/v1/groups", {"name": "New", "participants": people})
    assert status == 201, made
    assert made["name"] == "New" and made["size"] == 3  # the duplicate is sent once
    assert h.world.called("create_group")[0][2] == [ALICE, BOB]
    assert h.metric("wabot_account_operations_total", operation="group_create",
                    result="ok") == 1


def test_admin_operations(api: Callable[..., AccountHarness]) -> None:
    h = api()
    g = f"/v1/groups/{G}"
    assert call(h, "POST", g + "/name", {"name": "Team 2"})[2]["name"] == "Team 2"
    assert call(h, "POST", g + "/description", {"description": "Rules"})[2]["topic"] == "Rules"
    status, _, info = call(h, "POST", g + "/settings", {"announce": True, "locked": True})
    assert status == 200 and info["announce"] and info["locked"]
    status, _, body = call(h, "POST", g + "/participants",
                           {"action": "add", "participants": [CAROL, ALICE, "15550009999"]})
    assert status == 200
    assert [(p["jid"].split("@")[0], p["status"], p["error"]) for p in body["participants"]] == [
        (CAROL, "ok", None), (ALICE, "failed", 409), ("15550009999", "failed", 403)]
    for action in ("promote", "demote", "remove"):
        status, _, body = call(h, "POST", g + "/participants",
                               {"action": action, "participants": [CAROL]})
        assert status == 200 and body["participants"][0]["status"] == "ok", (action, body)
    assert CAROL not in h.world.groups[G].participants
    status, _, link = call(h, "GET", g + "/invite")
    assert link["link"] == "https://chat.whatsapp.com/AbCdEfGhIjKl"
    status, _, reset = call(h, "POST", g + "/invite/reset")
    assert status == 200 and reset["link"] != link["link"]
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
    assert call(h, "POST", g + "/photo", raw=jpeg)[0] == 200
    assert h.world.called("set_group_photo") == [("set_group_photo", G, len(jpeg))]


def test_join_and_leave(api: Callable[..., AccountHarness]) -> None:
    h = api()
    h.world.groups["120363000000000077"].link_code = "JoinMe1234Xy"
    status, _, body = call(h, "POST", "/v1/groups/join",
                           {"link": "https://chat.whatsapp.com/JoinMe1234Xy"})
    assert status == 200 and body["group"] == "120363000000000077@g.us"
    status, _, body = call(h, "POST", "/v1/groups/join", {"link": "Revoked12345"})
    assert status == 410 and body["error"] == "invite_revoked"
    assert call(h, "POST", f"/v1/groups/{G}/leave")[0] == 200
    assert OWN not in h.world.groups[G].participants
    status, _, body = call(h, "GET", f"/v1/groups/{G}")
    assert status == 404 and body["error"] == "group_not_found"


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("GET", "/v1/groups/not-a-group", None, 422, "invalid_request"),
    ("GET", "/v1/groups/120363000000000099", None, 404, "group_not_found"),  # no such group
    ("GET", "/v1/groups/120363000000000077", None, 404, "group_not_found"),  # another's
    ("POST", "/v1/groups/120363000000000088/name", {"name": "x"}, 403, "not_an_admin"),
    ("POST", "/v1/groups/120363000000000088/participants",
     {"action": "add", "participants": [ALICE]}, 403, "not_an_admin"),
    ("POST", f"/v1/groups/{G}/participants",
     {"action": "add", "participants": [f"1555{i:07d}" for i in range(1025)]}, 422,
     "invalid_request"),
    ("POST", f"/v1/groups/{G}/participants", {"action": "add", "participants": ["bob"]}, 422,
     "invalid_request"),
    ("POST", f"/v1/groups/{G}/participants",
     {"action": "add", "participants": ["1555@g.us"]}, 422, "invalid_request"),
    ("POST", f"/v1/groups/{G}/participants", {"action": "kick", "participants": [ALICE]}, 422,
     "invalid_request"),
    ("POST", f"/v1/groups/{G}/settings", {}, 422, "invalid_request"),
    ("POST", f"/v1/groups/{G}/name", {"name": "x" * 101}, 422, "invalid_request"),
    ("POST", f"/v1/groups/{G}/photo", None, 422, "invalid_request"),
    ("POST", "/v1/groups", {"name": ""}, 422, "invalid_request"),
    ("POST", "/v1/groups/join", {"link": "https://evil.example/x"}, 422, "invalid_request"),
])
def test_bad_input_is_refused_before_anything_is_sent(
        api: Callable[..., AccountHarness], method: str, path: str, body: Any, status: int,
        code: str) -> None:
    h = api()
    got, _, answer = call(h, method, path, body)
    assert (got, answer["error"]) == (status, code), answer
    changes = [c for c in h.world.calls if c[0] not in ("get_group_info",)]
    assert changes == []


def test_not_connected_is_503_and_nothing_is_sent(api: Callable[..., AccountHarness]) -> None:
    h = api(connect=False)
    for method, path, body in [("GET", "/v1/groups", None),
                               ("POST", f"/v1/groups/{G}/name", {"name": "x"}),
                               ("POST", "/v1/contacts/check", {"numbers": [ALICE]}),
                               ("POST", "/v1/presence", {"presence": "available"})]:
        status, _, answer = call(h, method, path, body)
        assert status == 503 and answer["error"] == "bot_not_connected", answer
        assert "state Connecting" in answer["message"] and answer["phase"] == "Connecting"
    assert h.world.calls == []


def test_changes_take_from_the_rate_limit(api: Callable[..., AccountHarness]) -> None:
    h = api(WhatsAppBotSpec.model_validate({"serverName": "tenant-a", "botId": "bot-a",
                                            "rateLimit": {"perChatPerMinute": 2}}))
    for n in range(2):
        assert call(h, "POST", f"/v1/groups/{G}/name", {"name": f"n{n}"})[0] == 200
    status, headers, answer = call(h, "POST", f"/v1/groups/{G}/name", {"name": "n3"})
    assert status == 429 and answer["error"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    assert h.world.groups[G].name == "n1"
    assert call(h, "GET", f"/v1/groups/{G}")[0] == 200  # reads are not limited
    assert h.metric("wabot_account_operations_total", operation="group_name",
                    result="rate_limited") == 1


def test_contacts(api: Callable[..., AccountHarness]) -> None:
    h = api()
    status, _, body = call(h, "POST", "/v1/contacts/check",
                           {"numbers": [f"+{ALICE}", "15550009999"]})
    assert status == 200
    assert body["results"] == [
        {"number": ALICE, "onWhatsapp": True, "jid": f"{ALICE}@s.whatsapp.net"},
        {"number": "15550009999", "onWhatsapp": False, "jid": None}]
    assert h.world.called("is_on_whatsapp") == [("is_on_whatsapp", f"+{ALICE}",
                                                 "+15550009999")]
    status, _, info = call(h, "GET", f"/v1/contacts/{ALICE}")
    assert status == 200 and info["status"] == "At work" and info["devices"] == 1
    status, _, answer = call(h, "GET", "/v1/contacts/15550009999")
    assert status == 404 and answer["error"] == "not_on_whatsapp"
    status, _, pic = call(h, "GET", f"/v1/contacts/%2B{ALICE}/picture")
    assert status == 200 and pic["url"].endswith(f"{ALICE}.jpg")
    assert call(h, "GET", f"/v1/contacts/{ALICE}/ids")[2] == {
        "phone": f"{ALICE}@s.whatsapp.net", "lid": "98765432101234@lid"}
    assert call(h, "GET", "/v1/contacts/98765432101234@lid/ids")[2] == {
        "phone": f"{ALICE}@s.whatsapp.net", "lid": "98765432101234@lid"}
    for bad in ("alice", "1234", "15550001111@g.us"):
        status, _, answer = call(h, "GET", f"/v1/contacts/{bad}")
        assert status == 422 and answer["field"] == "user", bad
    status, _, answer = call(h, "POST", "/v1/contacts/check",
                             {"numbers": [f"1555{i:07d}" for i in range(51)]})
    assert status == 422 and answer["field"] == "numbers"


def test_presence(api: Callable[..., AccountHarness]) -> None:
    h = api()
    assert call(h, "POST", "/v1/presence", {"presence": "available"})[0] == 200
    assert call(h, "POST", "/v1/presence/subscribe", {"jid": ALICE})[0] == 200
    assert call(h, "POST", "/v1/presence", {"presence": "busy"})[0] == 422
    assert h.world.called("send_presence") == [("send_presence", "available")]
    assert h.world.called("subscribe_presence") == [("subscribe_presence", ALICE)]
