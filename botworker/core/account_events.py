"""The account's events as the tenant sees them: neonize's receipt, presence, group, call and
session events (protobufs, read by attribute: the core imports no neonize) turned into the
webhook events' data (wabot/event_view.py, the models of wabot.events). Pure:
runtime/account_events.py registers the handlers and queues what comes out of here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import connstate

if TYPE_CHECKING:  # event data (wabot/event_view.py): imported where it is built
    from wabot.event_view import (
        AckData,
        CallData,
        GroupEventData,
        PresenceData,
        SessionStatusData,
    )

# neonize's ReceiptEv.Type (whatsmeow's receipt types). Only the receipts for messages the bot
# sent become `message.ack`: READ_SELF / PLAYED_SELF are the account's own other devices
# reading what others wrote, RETRY / SERVER_ERROR / INACTIVE / PEER_MSG / HISTORY_SYNC are
# protocol traffic.
_ACKS = {1: "delivered", 2: "sent", 4: "read", 6: "played"}
# ChatPresenceEv.State and .Media.
_COMPOSING, _PAUSED = 1, 2
_AUDIO = 2


def jid_str(jid: Any) -> str:
    """A person or a chat, not a device: "user@server" (the device suffix dropped)."""
    user = getattr(jid, "User", "") or ""
    server = getattr(jid, "Server", "") or ""
    return f"{user}@{server}" if user and server else ""


def epoch_time(value: int) -> datetime | None:
    """neonize hands times over as Unix seconds or milliseconds, depending on the event."""
    if not value or value < 0:
        return None
    seconds = value / 1000 if value > 10**11 else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def ack(ev: Any) -> AckData | None:
    from wabot.event_view import AckData

    status = _ACKS.get(int(ev.Type))
    ids = [str(i) for i in ev.MessageIDs if i]
    if status is None or not ids:
        return None
    src = ev.MessageSource
    return AckData(chat=jid_str(src.Chat), sender=jid_str(src.Sender), message_ids=ids,
                   status=status, timestamp=epoch_time(ev.Timestamp))  # type: ignore[arg-type]


def presence(ev: Any) -> PresenceData:
    from wabot.event_view import PresenceData

    return PresenceData(kind="presence", jid=jid_str(ev.From), available=not ev.Unavailable,
                        last_seen=epoch_time(ev.LastSeen))


def chat_presence(ev: Any) -> PresenceData:
    from wabot.event_view import PresenceData

    src = ev.MessageSource
    if int(ev.State) == _COMPOSING:
        state = "recording" if int(ev.Media) == _AUDIO else "composing"
    else:
        state = "paused"
    return PresenceData(kind="chat", jid=jid_str(src.Chat), sender=jid_str(src.Sender),
                        state=state)  # type: ignore[arg-type]


def joined(ev: Any, own: str | None) -> GroupEventData:
    """The bot itself joined (was added to, or created) a group."""
    from wabot.event_view import GroupEventData

    info = ev.GroupInfo
    return GroupEventData(group=jid_str(info.JID), by=jid_str(ev.Sender) or None,
                          participants=[own] if own else [], reason=ev.Reason or None,
                          name=info.GroupName.Name or None)


def _jids(items: Any) -> list[str]:
    return [j for j in (jid_str(i) for i in items) if j]


def group_info(ev: Any) -> list[tuple[str, GroupEventData]]:
    """One GroupInfoEv: who joined (`group.join`), who left (`group.leave`), what else changed
    (`group.update`); an event only for what is there."""
    from wabot.event_view import GroupEventData

    group, by, when = jid_str(ev.JID), jid_str(ev.Sender) or None, epoch_time(ev.Timestamp)
    out: list[tuple[str, GroupEventData]] = []
    if len(ev.Join):
        out.append(("group.join", GroupEventData(group=group, by=by, participants=_jids(ev.Join),
                                                 reason=ev.JoinReason or None,
                                                 timestamp=when)))
    if len(ev.Leave):
        out.append(("group.leave", GroupEventData(group=group, by=by,
                                                  participants=_jids(ev.Leave), timestamp=when)))
    changes: dict[str, Any] = {}
    if ev.HasField("Name"):
        changes["name"] = ev.Name.Name
    if ev.HasField("Topic"):
        changes["topic"] = "" if ev.Topic.TopicDeleted else ev.Topic.Topic
    if ev.HasField("Announce"):
        changes["announce"] = ev.Announce.IsAnnounce
    if ev.HasField("Locked"):
        changes["locked"] = ev.Locked.isLocked
    if ev.HasField("Ephemeral"):
        changes["ephemeral_seconds"] = (ev.Ephemeral.DisappearingTimer
                                        if ev.Ephemeral.IsEphemeral else 0)
    if len(ev.Promote):
        changes["promoted"] = _jids(ev.Promote)
    if len(ev.Demote):
        changes["demoted"] = _jids(ev.Demote)
    if ev.NewInviteLink:
        changes["invite_link_changed"] = True
    if ev.HasField("Delete") and ev.Delete.Deleted:
        changes["deleted"] = True
    if changes:
        out.append(("group.update", GroupEventData(group=group, by=by, timestamp=when,
                                                   **changes)))
    return out


def call(ev: Any, rejected: bool | None) -> CallData:
    from wabot.event_view import CallData

    meta = ev.basicCallMeta
    return CallData(call_id=str(meta.callID), caller=jid_str(meta.callCreator),
                    timestamp=epoch_time(meta.timestamp), rejected=rejected)


def session_status(before: connstate.ConnState, after: connstate.ConnState,
                   action: dict[str, Any] | None) -> SessionStatusData:
    from wabot.event_view import SessionStatusData

    return SessionStatusData(
        state=after.state.value, previous_state=before.state.value,
        last_error=after.last_error, error_reason=after.error_reason,
        account=after.account.jid if after.account is not None else None,
        session_action=action)
