"""Which messages the bot looks at."""

from __future__ import annotations

from dataclasses import replace

from botworker.core.filters import Inbound, SeenIds, drop_reason

MSG = Inbound(
    message_id="ID1", chat="1555@s.whatsapp.net", chat_server="s.whatsapp.net",
    sender="1555@s.whatsapp.net", is_from_me=False, is_group=False, push_name="x",
    timestamp_ms=0,
)


def test_direct_message_passes() -> None:
    assert drop_reason(MSG, ignore_groups=True, own_jid_user="4900") is None


def test_own_messages_by_flag_or_by_sender() -> None:
    assert drop_reason(replace(MSG, is_from_me=True), ignore_groups=True,
                       own_jid_user=None) == "own_message"
    own = replace(MSG, sender="4900:12@s.whatsapp.net")
    assert drop_reason(own, ignore_groups=True, own_jid_user="4900") == "own_message"


def test_groups_follow_the_setting() -> None:
    g = replace(MSG, is_group=True, chat="120363@g.us", chat_server="g.us")
    assert drop_reason(g, ignore_groups=True, own_jid_user=None) == "group"
    assert drop_reason(g, ignore_groups=False, own_jid_user=None) is None


def test_status_broadcasts_and_channels_are_never_conversations() -> None:
    for server in ("broadcast", "newsletter"):
        m = replace(MSG, chat_server=server)
        assert drop_reason(m, ignore_groups=False, own_jid_user=None) == "broadcast"


def test_seen_ids_is_a_bounded_lru() -> None:
    seen = SeenIds(capacity=3)
    assert [seen.seen_before(k) for k in "abca"] == [False, False, False, True]
    seen.seen_before("d")  # evicts the least recently used: b
    assert seen.seen_before("b") is False
    assert len(seen) == 3
