"""The sender's fallback for a reply whose quote cannot be built: the same text unquoted, once,
and only when nothing was sent yet (a failed send is never retried, so never sent twice).

The real pipeline with a real MessageEv is in tests/worker/test_hostile.py; these pin the
split between "the quote cannot be built" and "the send failed" with stand-ins."""

from __future__ import annotations

from typing import Any

import pytest

from botworker.core.ratelimit import Limits, RateLimiter
from botworker.metrics import Metrics
from botworker.runtime.sender import NeonizeTransport, QuoteUnusable, Sender


class FakeClient:
    """The two neonize calls NeonizeTransport makes, recorded."""

    def __init__(self, *, build_fails: bool = False, send_fails: bool = False) -> None:
        self.build_fails = build_fails
        self.send_fails = send_fails
        self.built: list[Any] = []
        self.sent: list[tuple[Any, Any]] = []

    def build_reply_message(self, text: str, quoted: Any) -> Any:
        self.built.append(quoted)
        if self.build_fails:
            b"\xff".decode()  # what protobuf does with an invalid UTF-8 ID
        return ("reply", text, quoted)

    def send_message(self, to: Any, message: Any) -> Any:
        self.sent.append((to, message))
        if self.send_fails:
            raise RuntimeError("network down")
        return type("Resp", (), {"ID": f"S{len(self.sent)}"})()


def sender(client: FakeClient) -> tuple[Sender, Metrics]:
    metrics = Metrics("bot-a", "tenant-a")
    limiter = RateLimiter(Limits(per_chat_per_minute=100, per_bot_per_minute=100))
    return Sender(NeonizeTransport(client), limiter, metrics, lambda: True), metrics


def test_the_transport_tells_an_unbuildable_quote_from_a_failed_send() -> None:
    with pytest.raises(QuoteUnusable) as err:
        NeonizeTransport(FakeClient(build_fails=True)).send_text("chat", "hi", "ev")
    assert isinstance(err.value.__cause__, UnicodeDecodeError)
    client = FakeClient(send_fails=True)
    with pytest.raises(RuntimeError):
        NeonizeTransport(client).send_text("chat", "hi", "ev")
    assert client.sent == [("chat", ("reply", "hi", "ev"))]


def test_an_unquotable_reply_goes_out_unquoted_and_counts() -> None:
    client = FakeClient(build_fails=True)
    s, metrics = sender(client)
    ev = object()
    assert s.send_text("c", "chat", "first", quoted=ev).message_id == "S1"
    assert s.send("c", "chat", "second", quoted=ev) == "sent"
    assert client.sent == [("chat", "first"), ("chat", "second")]
    assert client.built == [ev]  # the second reply to the same message does not try again
    assert metrics.value("wabot_replies_unquoted_total", reason="invalid_utf8") == 2
    assert metrics.value("wabot_messages_sent_total") == 2
    assert metrics.value("wabot_messages_dropped_total", reason="send_failed") == 0
    # another message is tried with its quote again
    client.build_fails = False
    other = object()
    assert s.send("c", "chat", "third", quoted=other) == "sent"
    assert client.sent[-1] == ("chat", ("reply", "third", other))


def test_a_failed_quoted_send_is_not_retried_unquoted() -> None:
    client = FakeClient(send_fails=True)
    s, metrics = sender(client)
    assert s.send("c", "chat", "hi", quoted=object()) == "failed"
    assert len(client.sent) == 1
    assert metrics.value("wabot_messages_dropped_total", reason="send_failed") == 1
    assert metrics.value("wabot_replies_unquoted_total", reason="invalid_utf8") == 0


def test_an_unquotable_reply_whose_plain_send_fails_is_one_failed_send() -> None:
    client = FakeClient(build_fails=True, send_fails=True)
    s, metrics = sender(client)
    assert s.send("c", "chat", "hi", quoted=object()) == "failed"
    assert client.sent == [("chat", "hi")]
    assert metrics.value("wabot_messages_dropped_total", reason="send_failed") == 1
    assert metrics.value("wabot_replies_unquoted_total", reason="invalid_utf8") == 0
