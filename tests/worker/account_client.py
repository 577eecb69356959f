"""A neonize client whose calls that would reach WhatsApp's servers for the account (logout,
pairing by phone, groups, contacts, presence) answer as whatsmeow would, with neonize's own
protobuf classes, and record what they were asked. Everything above those methods is
neonize's real code; nothing leaves the machine.

`AccountWorld` is the state those answers come from: the groups the account is in, who is
on WhatsApp, the LID of each phone number. A test sets it up and reads what was done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from botworker.worker import Worker
from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, worker_config

OWN = "4915100000001"


@dataclass
class Group:
    jid: str
    name: str
    topic: str = ""
    participants: dict[str, str] = field(default_factory=dict)  # user -> "" | admin | super
    announce: bool = False
    locked: bool = False
    link_code: str = "AbCdEfGhIjKl"


@dataclass
class AccountWorld:
    groups: dict[str, Group] = field(default_factory=dict)
    on_whatsapp: set[str] = field(default_factory=set)
    lids: dict[str, str] = field(default_factory=dict)  # phone -> lid user
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)  # method -> whatsmeow's error text

    def record(self, *call: Any) -> None:
        self.calls.append(call)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


def account_client(path: str, world: AccountWorld) -> Any:
    from neonize.client import NewClient
    from neonize.exc import (
        GetGroupInfoError,
        GetGroupInviteLinkError,
        JoinGroupWithInviteError,
        LeaveGroupError,
        SetGroupAnnounceError,
        SetGroupLockedError,
        SetGroupNameError,
        SetGroupPhotoError,
        SetGroupTopicError,
        UpdateGroupParticipantsError,
    )
    from neonize.proto.Neonize_pb2 import (
        JID,
        GetUserInfoSingleReturnFunction,
        GroupParticipant,
        IsOnWhatsAppResponse,
        ProfilePictureInfo,
        SendResponse,
        UserInfo,
    )
    from neonize.utils import build_jid

    class _Account(NewClient):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.world = world
            self.sent: list[tuple[Any, Any]] = []
            self._lock = threading.Lock()

        def _check(self, method: str) -> None:
            err = self.world.fail.get(method)
            if err is not None:
                raise Exception(err)  # neonize raises its *Error classes with Go's text

        def send_message(self, to: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(message, str):
                from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

                message = Message(conversation=message)
            with self._lock:
                self.sent.append((to, message))
                return SendResponse(ID=f"S{len(self.sent)}", Timestamp=int(time.time()))

        @property
        def is_connected(self) -> bool:
            """whatsmeow's live flag: the session this test pretends is up."""
            return True

        def get_me(self) -> Any:
            """The linked account, as GetMe answers once connected."""
            from neonize.proto.Neonize_pb2 import Device

            return Device(JID=build_jid(OWN), PushName="Shop")

        def replies(self) -> list[tuple[str, str, str]]:
            """(chat user, text, quoted message id) per sent message, as Harness.ask reads."""
            with self._lock:
                return [(to.User, m.extendedTextMessage.text or m.conversation,
                         m.extendedTextMessage.contextInfo.stanzaID) for to, m in self.sent]

        def logout(self) -> None:
            self.world.record("logout")
            self._check("logout")

        def PairPhone(self, phone: str, show_push_notification: bool,
                      client_name: Any = None, client_type: Any = None) -> str:
            self.world.record("PairPhone", phone)
            return "ABCD-EFGH"

        # --- groups: whatsmeow's answers, from the world's groups ------------------------

        def get_joined_groups(self) -> list[Any]:
            self.world.record("get_joined_groups")
            self._check("get_joined_groups")
            return [_info(g) for g in self.world.groups.values() if OWN in g.participants]

        def get_group_info(self, jid: Any) -> Any:
            self.world.record("get_group_info", jid.User)
            return _info(self._group(jid, GetGroupInfoError))

        def create_group(self, name: str, participants: list[Any] | None = None,
                         linked_parent: Any = None, group_parent: Any = None) -> Any:
            people = participants or []
            self.world.record("create_group", name, [j.User for j in people])
            self._check("create_group")
            jid = f"1203630000{len(self.world.groups) + 1:08d}"
            g = Group(jid, name, participants={OWN: "super", **{j.User: "" for j in people}})
            self.world.groups[jid] = g
            return _info(g)

        def update_group_participants(self, jid: Any, changes: list[Any], action: Any) -> Any:
            g = self._admin(jid, UpdateGroupParticipantsError)
            self.world.record("update_group_participants", jid.User, action.value,
                              [j.User for j in changes])
            out = []
            for j in changes:
                error = 0
                if action.value == "add":
                    error = 409 if j.User in g.participants else (
                        403 if j.User not in self.world.on_whatsapp else 0)
                    if not error:
                        g.participants[j.User] = ""
                elif j.User not in g.participants:
                    error = 404
                elif action.value == "remove":
                    del g.participants[j.User]
                else:
                    g.participants[j.User] = "admin" if action.value == "promote" else ""
                out.append(GroupParticipant(JID=build_jid(j.User), Error=error))
            return out

        def set_group_name(self, jid: Any, name: str) -> None:
            self._admin(jid, SetGroupNameError).name = name
            self.world.record("set_group_name", jid.User, name)

        def set_group_topic(self, jid: Any, previous_id: str, new_id: str, topic: str) -> None:
            self._admin(jid, SetGroupTopicError).topic = topic
            self.world.record("set_group_topic", jid.User, topic)

        def set_group_announce(self, jid: Any, announce: bool) -> None:
            self._admin(jid, SetGroupAnnounceError).announce = announce
            self.world.record("set_group_announce", jid.User, announce)

        def set_group_locked(self, jid: Any, locked: bool) -> None:
            self._admin(jid, SetGroupLockedError).locked = locked
            self.world.record("set_group_locked", jid.User, locked)

        def set_group_photo(self, jid: Any, file_or_bytes: Any) -> str:
            self._admin(jid, SetGroupPhotoError)
            self.world.record("set_group_photo", jid.User, len(file_or_bytes))
            return "PHOTO-1"

        def get_group_invite_link(self, jid: Any, revoke: bool = False) -> str:
            g = self._group(jid, GetGroupInviteLinkError)
            if revoke:
                g.link_code = g.link_code[::-1]
            self.world.record("get_group_invite_link", jid.User, revoke)
            return f"https://chat.whatsapp.com/{g.link_code}"

        def join_group_with_link(self, code: str) -> Any:
            self.world.record("join_group_with_link", code)
            for g in self.world.groups.values():
                if g.link_code == code:
                    g.participants.setdefault(OWN, "")
                    return build_jid(g.jid, "g.us")
            raise JoinGroupWithInviteError("failed to join group: server returned error 410: gone")

        def leave_group(self, jid: Any) -> None:
            g = self._group(jid, LeaveGroupError)
            del g.participants[OWN]
            self.world.record("leave_group", jid.User)

        def _group(self, jid: Any, error: type[Exception]) -> Group:
            g = self.world.groups.get(jid.User)
            if g is None or OWN not in g.participants:
                # What whatsmeow says for a group that does not exist or is not ours.
                raise error("info query returned status 404: item-not-found")
            return g

        def _admin(self, jid: Any, error: type[Exception]) -> Group:
            g = self._group(jid, error)
            if not g.participants.get(OWN):
                raise error("info query returned status 403: not-authorized")
            return g

        # --- contacts and presence --------------------------------------------------------

        def is_on_whatsapp(self, *numbers: str) -> list[Any]:
            self.world.record("is_on_whatsapp", *numbers)
            self._check("is_on_whatsapp")
            return [IsOnWhatsAppResponse(Query=n, JID=build_jid(n.lstrip("+")),
                                         IsIn=n.lstrip("+") in self.world.on_whatsapp)
                    for n in numbers]

        def get_user_info(self, *jids: Any) -> list[Any]:
            self.world.record("get_user_info", *[j.User for j in jids])
            return [GetUserInfoSingleReturnFunction(JID=j, UserInfo=UserInfo(
                Status="At work", PictureID="P1", Devices=[j])) for j in jids
                if j.User in self.world.on_whatsapp]

        def get_profile_picture(self, jid: Any, extra: Any = None) -> Any:
            self.world.record("get_profile_picture", jid.User)
            return ProfilePictureInfo(URL=f"https://pps.whatsapp.net/{jid.User}.jpg", ID="P1",
                                      Type="image")

        def get_lid_from_pn(self, jid: Any) -> Any:
            lid = self.world.lids.get(jid.User)
            return build_jid(lid, "lid") if lid else JID()

        def get_pn_from_lid(self, jid: Any) -> Any:
            phones = {v: k for k, v in self.world.lids.items()}
            phone = phones.get(jid.User)
            return build_jid(phone) if phone else JID()

        def send_presence(self, presence: Any) -> None:
            self.world.record("send_presence", presence.value.decode())

        def subscribe_presence(self, jid: Any) -> None:
            self.world.record("subscribe_presence", jid.User)

        def send_chat_presence(self, jid: Any, state: Any, media: Any) -> None:
            self.world.record("send_chat_presence", jid.User, state.name, media.name)

    return _Account(path)


def _info(g: Group) -> Any:
    """A group as whatsmeow's GetGroupInfo answers it (neonize's GroupInfo protobuf)."""
    from neonize.proto.Neonize_pb2 import (
        GroupAnnounce,
        GroupInfo,
        GroupLocked,
        GroupName,
        GroupParticipant,
        GroupTopic,
    )
    from neonize.utils import build_jid

    people = [GroupParticipant(JID=build_jid(u), PhoneNumber=build_jid(u),
                               IsAdmin=role in ("admin", "super"), IsSuperAdmin=role == "super")
              for u, role in g.participants.items()]
    return GroupInfo(JID=build_jid(g.jid, "g.us"), OwnerJID=build_jid(OWN),
                     GroupName=GroupName(Name=g.name),
                     GroupTopic=GroupTopic(Topic=g.topic, TopicID="T1"),
                     GroupAnnounce=GroupAnnounce(IsAnnounce=g.announce),
                     GroupLocked=GroupLocked(isLocked=g.locked), GroupCreated=1700000000,
                     Participants=people)


class AccountHarness(Harness):
    def __init__(self, worker: Worker, world: AccountWorld) -> None:
        super().__init__(worker)
        self.world = world


@pytest.fixture
def make_account_worker(tmp_path: Path) -> Iterator[Callable[..., AccountHarness]]:
    """make_worker's twin on the account client (same Worker, same wiring)."""
    made: list[Worker] = []

    def make(spec: WhatsAppBotSpec | None = None, *, bot: str = "bot-a",
             tenant: str = "tenant-a", connect: bool = True, env: dict[str, str] | None = None,
             world: AccountWorld | None = None, **kw: Any) -> AccountHarness:
        world = world or AccountWorld()
        cfg = worker_config(tmp_path / bot, bot, tenant, **(env or {}))
        spec = spec or WhatsAppBotSpec(server_name=tenant, bot_id=bot)
        cfg.session_dir.mkdir(parents=True, exist_ok=True)
        client = account_client(str(cfg.session_path), world)
        w = Worker(cfg, spec, client=client, sessions_enabled=False, terminal=False, **kw)
        made.append(w)
        w.start()
        assert w.connection.sync()
        h = AccountHarness(w, world)
        if connect:
            h.connect()
        return h

    yield make
    for w in made:
        w.stop(5.0)
