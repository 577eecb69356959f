"""The account's operations on the neonize client: groups, contacts, presence. One place for
what every operation shares, used by the worker's API (groups_api.py, contacts_api.py) and by
plugins (`ctx.account`):

- not connected (or without the Lease): 503 naming the state, nothing sent;
- everything that changes something on WhatsApp (a group created, renamed, its members or
  settings changed, a link reset, a group joined or left, presence set or subscribed, a batch
  of numbers checked: mass look-ups are what gets numbers banned) takes one message from the
  bot's rate limits (spec.rateLimit, the sender's limiter: the group, or "account", is the
  chat), 429 with Retry-After when over them; reads (lists, infos, pictures, the local
  lid <-> phone store) are not limited;
- admin operations check first that the group exists (404) and that the bot is an admin (403);
- whatsmeow's refusals become clear answers (account_ops.refusal);
- wabot_account_operations_total{operation, result} counts each.

The neonize calls made here are the seam the tests answer with neonize's own protobufs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from wabot.account_core import AccountError, group_user, user_parts

from ..core.account_events import epoch_time, jid_str
from ..core.ratelimit import RateLimiter
from .account_ops import OpMetrics, refusal

if TYPE_CHECKING:  # event/API data is pydantic: imported where it is built
    from wabot.account import (
        ContactView,
        GroupView,
        JidMapping,
        OnWhatsAppResult,
        ParticipantResult,
        ProfilePictureView,
    )

T = TypeVar("T")
ACCOUNT_KEY = "account"
MAX_PHOTO = 1024 * 1024


# The refusal every operation raises (plugins see it under its public name).
OpError = AccountError


def _group_jid(gid: str) -> Any:
    from neonize.utils import build_jid

    return build_jid(group_user(gid), "g.us")


def _user_jid(user: str) -> Any:
    from neonize.utils import build_jid

    return build_jid(*user_parts(user))


def group_view(info: Any, participants: bool = True) -> GroupView:
    from wabot.account import GroupView, Participant

    people = [Participant(jid=jid_str(p.JID), phone=jid_str(p.PhoneNumber) or None,
                          lid=jid_str(p.LID) or None, is_admin=p.IsAdmin or p.IsSuperAdmin,
                          is_super_admin=p.IsSuperAdmin) for p in info.Participants]
    eph = info.GroupEphemeral
    return GroupView(
        jid=jid_str(info.JID), name=info.GroupName.Name, topic=info.GroupTopic.Topic or None,
        owner=jid_str(info.OwnerJID) or None, created_at=epoch_time(int(info.GroupCreated)),
        announce=info.GroupAnnounce.IsAnnounce, locked=info.GroupLocked.isLocked,
        ephemeral_seconds=eph.DisappearingTimer if eph.IsEphemeral else None,
        size=len(people), participants=people if participants else [])


class AccountCalls:
    def __init__(self, client: Any, *, limiter: RateLimiter, ops: OpMetrics,
                 ready: Callable[[], bool], state: Callable[[], str],
                 own_user: Callable[[], str | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._limiter = limiter
        self._ops = ops
        self._ready = ready
        self._state = state
        self._own_user = own_user
        self._clock = clock

    # --- what every operation shares -------------------------------------------------------

    def _run(self, op: str, call: Callable[[], T], *, limit: str | None = None) -> T:
        try:
            if not self._ready():
                raise OpError(503, "bot_not_connected", "the bot is not connected to WhatsApp "
                              f"(state {self._state()}); retry once it is Connected",
                              phase=self._state())
            if not self._client.is_connected:
                # whatsmeow's own flag, checked too: some of neonize's calls dereference the
                # Go client unchecked, and a process without a live one aborts (measured for
                # the lid <-> phone look-ups: SIGSEGV, exit 134).
                raise OpError(503, "bot_not_connected", "the bot's WhatsApp connection is not "
                              "up right now; retry shortly")
            if limit is not None:
                now = self._clock()
                if self._limiter.try_acquire(limit, now) is not None:
                    wait = max(1, math.ceil(self._limiter.retry_after(limit, now)))
                    raise OpError(429, "rate_limited", "the bot's rate limit (spec.rateLimit) "
                                  "allows nothing more to WhatsApp right now", retry_after=wait)
            result = call()
        except OpError as exc:
            self._ops.observe(op, exc.code)
            raise
        except Exception as exc:
            r = refusal(exc)
            self._ops.observe(op, r.code)
            raise OpError(r.status, r.code, r.message) from None
        self._ops.observe(op, "ok")
        return result

    def _admin_group(self, gid: str) -> Any:
        """The group's info, once it is known that it exists and the bot is an admin of it."""
        info = self._client.get_group_info(_group_jid(gid))
        own = self._own_user()
        if own is not None:
            me = [p for p in info.Participants
                  if own in (p.JID.User, p.PhoneNumber.User, p.LID.User)]
            if not me:
                raise OpError(404, "group_not_found", "the bot is not in this group")
            if not (me[0].IsAdmin or me[0].IsSuperAdmin):
                raise OpError(403, "not_an_admin", "the bot is not an admin of this group")
        return info

    # --- groups ------------------------------------------------------------------------------

    def groups(self) -> list[GroupView]:
        return self._run("groups_list", lambda: [group_view(g, participants=False)
                                                  for g in self._client.get_joined_groups()])

    def group(self, gid: str) -> GroupView:
        return self._run("group_info",
                         lambda: group_view(self._client.get_group_info(_group_jid(gid))))

    def create_group(self, name: str, participants: list[str]) -> GroupView:
        people = [_user_jid(p) for p in participants]
        return self._run("group_create", lambda: group_view(
            self._client.create_group(name, participants=people)), limit=ACCOUNT_KEY)

    def rename(self, gid: str, name: str) -> GroupView:
        def call() -> GroupView:
            self._admin_group(gid)
            self._client.set_group_name(_group_jid(gid), name)
            return group_view(self._client.get_group_info(_group_jid(gid)))
        return self._run("group_name", call, limit=gid)

    def describe(self, gid: str, description: str) -> GroupView:
        def call() -> GroupView:
            info = self._admin_group(gid)
            self._client.set_group_topic(_group_jid(gid), info.GroupTopic.TopicID, "",
                                         description)
            return group_view(self._client.get_group_info(_group_jid(gid)))
        return self._run("group_description", call, limit=gid)

    def settings(self, gid: str, announce: bool | None, locked: bool | None) -> GroupView:
        def call() -> GroupView:
            self._admin_group(gid)
            if announce is not None:
                self._client.set_group_announce(_group_jid(gid), announce)
            if locked is not None:
                self._client.set_group_locked(_group_jid(gid), locked)
            return group_view(self._client.get_group_info(_group_jid(gid)))
        return self._run("group_settings", call, limit=gid)

    def photo(self, gid: str, jpeg: bytes) -> str:
        if not jpeg.startswith(b"\xff\xd8\xff") or len(jpeg) > MAX_PHOTO:
            raise OpError(422, "invalid_request", "the photo must be a JPEG of at most 1 MiB",
                          field="body")

        def call() -> str:
            self._admin_group(gid)
            return str(self._client.set_group_photo(_group_jid(gid), jpeg))
        return self._run("group_photo", call, limit=gid)

    def participants(self, gid: str, action: str, users: list[str]) -> list[ParticipantResult]:
        from neonize.utils.enum import ParticipantChange

        from wabot.account import ParticipantResult

        change = {"add": ParticipantChange.ADD, "remove": ParticipantChange.REMOVE,
                  "promote": ParticipantChange.PROMOTE, "demote": ParticipantChange.DEMOTE}

        def call() -> list[ParticipantResult]:
            self._admin_group(gid)
            done = self._client.update_group_participants(
                _group_jid(gid), [_user_jid(u) for u in users], change[action])
            return [ParticipantResult(jid=jid_str(p.JID), status="failed" if p.Error else "ok",
                                      error=p.Error or None) for p in done]
        return self._run(f"group_{action}", call, limit=gid)

    def invite_link(self, gid: str, reset: bool = False) -> str:
        def call() -> str:
            if reset:
                self._admin_group(gid)
            return str(self._client.get_group_invite_link(_group_jid(gid), reset))
        return self._run("group_invite_reset" if reset else "group_invite", call,
                         limit=gid if reset else None)

    def join(self, code: str) -> str:
        return self._run("group_join", lambda: jid_str(self._client.join_group_with_link(code)),
                         limit=ACCOUNT_KEY)

    def leave(self, gid: str) -> None:
        self._run("group_leave", lambda: self._client.leave_group(_group_jid(gid)), limit=gid)

    # --- contacts ----------------------------------------------------------------------------

    def on_whatsapp(self, numbers: list[str]) -> list[OnWhatsAppResult]:
        from wabot.account import OnWhatsAppResult

        def call() -> list[OnWhatsAppResult]:
            found = {r.Query.lstrip("+"): r for r in
                     self._client.is_on_whatsapp(*[f"+{n}" for n in numbers])}
            out = []
            for n in numbers:
                r = found.get(n)
                out.append(OnWhatsAppResult(number=n, on_whatsapp=bool(r and r.IsIn),
                                            jid=jid_str(r.JID) or None if r and r.IsIn
                                            else None))
            return out
        return self._run("contacts_check", call, limit=ACCOUNT_KEY)

    def contact(self, user: str) -> ContactView:
        from wabot.account import ContactView

        def call() -> ContactView:
            jid = self._known_user(user)
            for item in self._client.get_user_info(jid):
                info = item.UserInfo
                name = info.VerifiedName.Details.verifiedName if info.HasField(
                    "VerifiedName") else ""
                return ContactView(jid=jid_str(item.JID) or jid_str(jid),
                                   status=info.Status or None, picture_id=info.PictureID or None,
                                   verified_name=name or None, devices=len(info.Devices))
            raise OpError(404, "not_on_whatsapp", "this number is not on WhatsApp")
        return self._run("contact_info", call)

    def picture(self, user: str) -> ProfilePictureView:
        from wabot.account import ProfilePictureView

        def call() -> ProfilePictureView:
            jid = self._known_user(user) if "@g.us" not in user else _group_jid(user)
            pic = self._client.get_profile_picture(jid)
            return ProfilePictureView(jid=jid_str(jid), url=pic.URL or None, id=pic.ID or None,
                                      type=pic.Type or None)
        return self._run("contact_picture", call)

    def ids(self, user: str) -> JidMapping:
        """The same person by phone number and by LID (whatsmeow's local store: no request)."""
        from wabot.account import JidMapping

        def call() -> JidMapping:
            jid = _user_jid(user)
            if jid.Server == "lid":
                other = jid_str(self._client.get_pn_from_lid(jid))
                return JidMapping(phone=other or None, lid=jid_str(jid))
            other = jid_str(self._client.get_lid_from_pn(jid))
            return JidMapping(phone=jid_str(jid), lid=other or None)
        return self._run("contact_ids", call)

    def _known_user(self, user: str) -> Any:
        """A phone number is checked first: "not on WhatsApp" is a 404, not an empty answer."""
        jid = _user_jid(user)
        if jid.Server == "s.whatsapp.net":
            answers = list(self._client.is_on_whatsapp(f"+{jid.User}"))
            if not answers or not answers[0].IsIn:
                raise OpError(404, "not_on_whatsapp", "this number is not on WhatsApp")
            if answers[0].JID.User:
                return answers[0].JID
        return jid

    # --- presence ----------------------------------------------------------------------------

    def set_presence(self, presence: str) -> None:
        from neonize.utils.enum import Presence

        value = Presence.AVAILABLE if presence == "available" else Presence.UNAVAILABLE
        self._run("presence_set", lambda: self._client.send_presence(value), limit=ACCOUNT_KEY)

    def chat_presence(self, chat: str, state: str) -> None:
        """Typing ("composing"), recording or "paused" in a chat (a user or a group)."""
        from neonize.utils.enum import ChatPresence, ChatPresenceMedia

        if state not in ("composing", "recording", "paused"):
            raise OpError(422, "invalid_request", "state: composing, recording or paused",
                          field="state")
        target = _group_jid(chat) if chat.endswith("@g.us") else _user_jid(chat)
        presence = (ChatPresence.CHAT_PRESENCE_PAUSED if state == "paused"
                    else ChatPresence.CHAT_PRESENCE_COMPOSING)
        media = (ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if state == "recording"
                 else ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT)
        self._run("presence_chat", lambda: self._client.send_chat_presence(target, presence,
                                                                           media), limit=chat)

    def subscribe(self, user: str) -> None:
        self._run("presence_subscribe", lambda: self._client.subscribe_presence(_user_jid(user)),
                  limit=ACCOUNT_KEY)
