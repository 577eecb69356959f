"""The account's events as a webhook receiver sees them: real neonize events (receipts,
presence, groups, calls) built with neonize's protobufs and pushed through the client's real
dispatcher, delivered signed to a real HTTP server; each selectable in spec.webhook.events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from neonize.events import (
    CallOfferEv,
    ChatPresenceEv,
    DisconnectedEv,
    GroupInfoEv,
    JoinedGroupEv,
    PresenceEv,
    ReceiptEv,
)
from neonize.proto.Neonize_pb2 import (
    BasicCallMeta,
    GroupAnnounce,
    GroupInfo,
    GroupName,
    GroupTopic,
    MessageSource,
)
from neonize.utils import build_jid

from wabot.events import WebhookPayload
from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, wait_for
from .receiver import Receiver
from .test_webhooks import FAST, KEY

Make = Callable[..., Harness]
GROUP = "120363000000000001"
ALL = ["message.ack", "presence.update", "group.join", "group.leave", "group.update", "call",
       "session.status"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(KEY.encode()).start()
    yield r
    r.stop()


def spec(url: str, events: list[str], **settings: Any) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({
        "serverName": "tenant-a", "botId": "bot-a", "settings": settings,
        "webhook": {"url": url, "secretRef": {"name": "hook"}, "events": events}})


def delivered(receiver: Receiver, n: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(receiver.accepted()) >= n, what=f"{n} deliveries")
    out = []
    for d in receiver.accepted():
        assert d.signature_ok
        WebhookPayload.model_validate_json(d.body)  # the documented schema, version 2
        out.append(d.payload)
    return out


def receipt(kind: int, *ids: str, chat: str = "15550001111", group: bool = False) -> ReceiptEv:
    return ReceiptEv(MessageSource=MessageSource(
        Chat=build_jid(chat, "g.us" if group else "s.whatsapp.net"),
        Sender=build_jid("15550002222"), IsGroup=group), MessageIDs=list(ids),
        Timestamp=int(time.time()), Type=kind)


def test_receipts_become_message_ack(make_worker: Make, receiver: Receiver) -> None:
    h = make_worker(spec(receiver.url, ["message.ack"]), env=FAST)
    h.feed(receipt(ReceiptEv.DELIVERED, "M1", "M2"))
    h.feed(receipt(ReceiptEv.READ, "M1", chat=GROUP, group=True))
    h.feed(receipt(ReceiptEv.PLAYED, "M3"))
    h.feed(receipt(ReceiptEv.SENDER, "M4"))
    h.feed(receipt(ReceiptEv.RETRY, "M5"))  # protocol traffic: no event
    h.feed(receipt(ReceiptEv.READ_SELF, "M6"))  # the account's own devices: no event
    got = delivered(receiver, 4)
    time.sleep(0.3)
    assert len(receiver.accepted()) == 4
    data = [p["data"] for p in got]
    assert [(d["status"], d["messageIds"]) for d in data] == [
        ("delivered", ["M1", "M2"]), ("read", ["M1"]), ("played", ["M3"]), ("sent", ["M4"])]
    assert data[1]["chat"] == f"{GROUP}@g.us" and data[1]["sender"] == "15550002222@s.whatsapp.net"
    assert {p["event"] for p in got} == {"message.ack"}


def test_presence_and_typing_become_presence_update(make_worker: Make,
                                                    receiver: Receiver) -> None:
    h = make_worker(spec(receiver.url, ["presence.update"]), env=FAST)
    h.feed(PresenceEv(From=build_jid("15550003333"), Unavailable=False))
    h.feed(PresenceEv(From=build_jid("15550003333"), Unavailable=True,
                      LastSeen=int(time.time())))
    src = MessageSource(Chat=build_jid("15550003333"), Sender=build_jid("15550003333"))
    h.feed(ChatPresenceEv(MessageSource=src, State=ChatPresenceEv.COMPOSING,
                          Media=ChatPresenceEv.TEXT))
    h.feed(ChatPresenceEv(MessageSource=src, State=ChatPresenceEv.COMPOSING,
                          Media=ChatPresenceEv.AUDIO))
    h.feed(ChatPresenceEv(MessageSource=src, State=ChatPresenceEv.PAUSED))
    data = [p["data"] for p in delivered(receiver, 5)]
    assert [(d["kind"], d["available"]) for d in data[:2]] == [("presence", True),
                                                             ("presence", False)]
    assert data[1]["lastSeen"] is not None
    assert [d["state"] for d in data[2:]] == ["composing", "recording", "paused"]


def test_group_changes_become_join_leave_update(make_worker: Make, receiver: Receiver) -> None:
    h = make_worker(spec(receiver.url, ["group.join", "group.leave", "group.update"]), env=FAST)
    gid = build_jid(GROUP, "g.us")
    admin = build_jid("15550004444")
    h.feed(JoinedGroupEv(Reason="invite", Type="new", Sender=admin,
                         GroupInfo=GroupInfo(JID=gid, GroupName=GroupName(Name="Team"))))
    h.feed(GroupInfoEv(JID=gid, Sender=admin, Timestamp=int(time.time()),
                       Join=[build_jid("15550005555")], Leave=[build_jid("15550006666")],
                       Promote=[build_jid("15550005555")], Name=GroupName(Name="Team 2"),
                       Topic=GroupTopic(Topic="Rules"),
                       Announce=GroupAnnounce(IsAnnounce=True)))
    got = delivered(receiver, 4)
    by_event = {p["event"]: p["data"] for p in got}
    assert by_event["group.join"]["group"] == f"{GROUP}@g.us"
    joins = [p["data"] for p in got if p["event"] == "group.join"]
    assert joins[0]["reason"] == "invite" and joins[0]["name"] == "Team"
    assert joins[1]["participants"] == ["15550005555@s.whatsapp.net"]
    assert by_event["group.leave"]["participants"] == ["15550006666@s.whatsapp.net"]
    update = by_event["group.update"]
    assert (update["name"], update["topic"], update["announce"]) == ("Team 2", "Rules", True)
    assert update["promoted"] == ["15550005555@s.whatsapp.net"]
    assert update["locked"] is None  # only what changed is set
    assert update["by"] == "15550004444@s.whatsapp.net"


def call_offer(call_id: str) -> CallOfferEv:
    return CallOfferEv(basicCallMeta=BasicCallMeta(
        **{"from": build_jid("15550007777")}, timestamp=int(time.time()),
        callCreator=build_jid("15550007777"), callID=call_id))


def test_calls_carry_the_reject_outcome(make_worker: Make, receiver: Receiver) -> None:
    rejecting = make_worker(spec(receiver.url, ["call"], rejectCalls=True), env=FAST)
    rejecting.feed(call_offer("CALL-1"))
    data = delivered(receiver, 1)[0]["data"]
    assert data == {"callId": "CALL-1", "caller": "15550007777@s.whatsapp.net",
                    "timestamp": data["timestamp"], "rejected": True}
    assert rejecting.client.rejected == [("15550007777", "CALL-1")]
    # Declining fails: the event says so.
    rejecting.feed(DisconnectedEv())
    wait_for(lambda: not rejecting.worker.ready()[0], what="disconnected")
    rejecting.feed(call_offer("CALL-2"))
    wait_for(lambda: len(receiver.accepted()) >= 2, what="the second call")
    assert receiver.accepted()[1].payload["data"]["rejected"] is False


def test_session_status_on_every_change(make_worker: Make, receiver: Receiver) -> None:
    h = make_worker(spec(receiver.url, ["session.status"]), env=FAST)
    h.feed(DisconnectedEv())
    wait_for(lambda: len(receiver.accepted()) >= 3, what="three changes")
    data = [d.payload["data"] for d in receiver.accepted()]
    pairs = [(d["previousState"], d["state"]) for d in data]
    assert ("Connecting", "Connected") in pairs and ("Connected", "Disconnected") in pairs


def test_nothing_is_delivered_unless_selected(make_worker: Make, receiver: Receiver) -> None:
    h = make_worker(spec(receiver.url, ["message"], rejectCalls=True), env=FAST)
    h.feed(receipt(ReceiptEv.READ, "M1"))
    h.feed(PresenceEv(From=build_jid("15550003333")))
    h.feed(GroupInfoEv(JID=build_jid(GROUP, "g.us"), Join=[build_jid("15550005555")]))
    h.feed(call_offer("CALL-9"))
    wait_for(lambda: h.client.rejected, what="the call still declined")
    h.say("hello")
    wait_for(lambda: receiver.accepted(), what="the message")
    time.sleep(0.3)
    assert [d.payload["event"] for d in receiver.accepted()] == ["message"]


def test_every_event_is_in_the_spec_enum() -> None:
    from typing import get_args

    from wabot.events import EVENT_DATA, WebhookEventType
    from wabot.spec import WebhookEvent

    assert set(ALL) <= set(get_args(WebhookEvent)) == set(get_args(WebhookEventType))
    assert set(ALL) <= set(EVENT_DATA)
