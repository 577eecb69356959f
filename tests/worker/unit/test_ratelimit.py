"""Outgoing rate limits: a burst up to the minute's allowance, then the steady rate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from botworker.core.ratelimit import Bucket, Limits, RateLimiter, refill


def test_refill_is_linear_and_capped() -> None:
    b = Bucket(0.0, 100.0)
    assert refill(b, 103.0, 20).tokens == 1.0  # 20/min = 1 token every 3 s
    assert refill(b, 10_000.0, 20).tokens == 20.0
    assert refill(b, 50.0, 20).tokens == 0.0  # a clock going backwards adds nothing


def test_per_chat_limit() -> None:
    rl = RateLimiter(Limits(per_chat_per_minute=3, per_bot_per_minute=100))
    assert [rl.try_acquire("a", 0.0) for _ in range(4)] == [None, None, None, "chat"]
    assert rl.try_acquire("b", 0.0) is None  # another chat has its own bucket
    assert rl.try_acquire("a", 20.0) is None  # one token back after 20 s
    assert rl.try_acquire("a", 20.0) == "chat"


def test_per_bot_limit_spans_chats() -> None:
    rl = RateLimiter(Limits(per_chat_per_minute=10, per_bot_per_minute=5))
    results = [rl.try_acquire(f"chat{i}", 0.0) for i in range(7)]
    assert results == [None] * 5 + ["bot", "bot"]


def test_refused_sends_take_no_token() -> None:
    rl = RateLimiter(Limits(per_chat_per_minute=1, per_bot_per_minute=2))
    assert rl.try_acquire("a", 0.0) is None
    assert rl.try_acquire("a", 0.0) == "chat"  # must not spend the bot's last token
    assert rl.try_acquire("b", 0.0) is None


def test_would_allow_peeks_without_taking() -> None:
    rl = RateLimiter(Limits(1, 1))
    assert rl.would_allow("a", 0.0) and rl.would_allow("a", 0.0)
    assert rl.try_acquire("a", 0.0) is None
    assert not rl.would_allow("a", 0.0)


def test_new_limits_apply_without_refilling() -> None:
    rl = RateLimiter(Limits(2, 100))
    rl.try_acquire("a", 0.0)
    rl.try_acquire("a", 0.0)
    rl.set_limits(Limits(50, 100))
    assert rl.try_acquire("a", 0.0) == "chat"  # a spec change is no way to reset a bucket


def test_forgotten_chats_are_bounded() -> None:
    rl = RateLimiter(Limits(1, 10**6), max_chats=100)
    for i in range(1000):
        rl.try_acquire(f"c{i}", 0.0)
    assert len(rl._chats) == 100


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 0.5)), max_size=300))
def test_never_more_than_burst_plus_rate(events: list[tuple[str, float]]) -> None:
    per_chat, per_bot = 5, 8
    rl = RateLimiter(Limits(per_chat, per_bot))
    now = 0.0
    sent_total = 0
    sent: dict[str, int] = {}
    for chat, dt in events:
        now += dt
        if rl.try_acquire(chat, now) is None:
            sent[chat] = sent.get(chat, 0) + 1
            sent_total += 1
    assert sent_total <= per_bot + now * per_bot / 60 + 1e-9
    for n in sent.values():
        assert n <= per_chat + now * per_chat / 60 + 1e-9
