"""The sender's fallback for a reply whose quote cannot be built: the same text unquoted, once,
and only when nothing was sent yet (a failed send is never retried, so never sent twice).

The quoted messages are real MessageEvs (one with an ID that is not valid UTF-8, as a stranger
can send it); only neonize's `send_message`, the network seam, is recorded. The whole
pipeline with such a message is in tests/worker/test_hostile.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from botworker.core.ratelimit import Limits, RateLimiter
from botworker.metrics import Metrics
from botworker.runtime.sender import NeonizeTransport, QuoteUnusable, Sender
from tests.support import wamessages as wa


def bad_id_event(text: str = "!ping") -> Any:
    """A MessageEv whose ID arrived as invalid UTF-8 (protobuf hands it over as bytes)."""
    from neonize.events import MessageEv

    raw = wa.event(wa.text(text), msg_id="QQQQ").SerializeToString()
    return MessageEv.FromString(raw.replace(b"QQQQ", b"\xff\xfeQQ"))


class SeamClient:
    """neonize's send_message (the one call that would reach WhatsApp), recorded."""

    def __init__(self, *, send_fails: bool = False) -> None:
        self.send_fails = send_fails
        self.sent: list[tuple[Any, Any]] = []

    def send_message(self, to: Any, message: Any) -> Any:
        self.sent.append((to, message))
        if self.send_fails:
            raise RuntimeError("network down")
        return type("Resp", (), {"ID": f"S{len(self.sent)}"})()

    def quoted(self, i: int) -> str | None:
        """The ID the i-th sent message quotes; None when it went out as plain text."""
        message = self.sent[i][1]
        if isinstance(message, str):
            return None
        return str(message.extendedTextMessage.contextInfo.stanzaID)

    def texts(self) -> list[str]:
        return [m if isinstance(m, str) else m.extendedTextMessage.text for _, m in self.sent]


def sender(client: SeamClient) -> tuple[Sender, Metrics]:
    metrics = Metrics("bot-a", "tenant-a")
    limiter = RateLimiter(Limits(per_chat_per_minute=100, per_bot_per_minute=100))
    return Sender(NeonizeTransport(client), limiter, metrics, lambda: True), metrics


def test_the_transport_tells_an_unbuildable_quote_from_a_failed_send() -> None:
    client = SeamClient()
    with pytest.raises(QuoteUnusable) as err:
        NeonizeTransport(client).send_text("chat", "hi", bad_id_event())
    assert isinstance(err.value.__cause__, UnicodeDecodeError)
    assert client.sent == []  # nothing went out: the same text may go unquoted
    client.send_fails = True
    good = wa.event(wa.text("!ping"))
    with pytest.raises(RuntimeError):
        NeonizeTransport(client).send_text("chat", "hi", good)
    assert client.quoted(0) == good.Info.ID


def test_an_unquotable_reply_goes_out_unquoted_and_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    client = SeamClient()
    s, metrics = sender(client)
    ev = bad_id_event()
    with caplog.at_level(logging.WARNING, logger="wabot.worker.sender"):
        assert s.send_text("c", "chat", "first", quoted=ev).message_id == "S1"
        assert s.send("c", "chat", "second", quoted=ev) == "sent"
    assert client.sent == [("chat", "first"), ("chat", "second")]
    # the second reply to the same message does not try (nor log) again
    assert len([r for r in caplog.records if "without quoting" in r.getMessage()]) == 1
    assert metrics.value("wabot_replies_unquoted_total", reason="invalid_utf8") == 2
    assert metrics.value("wabot_messages_sent_total") == 2
    assert metrics.value("wabot_messages_dropped_total", reason="send_failed") == 0
    # another message is answered with its quote again
    other = wa.event(wa.text("!ping"))
    assert s.send("c", "chat", "third", quoted=other) == "sent"
    assert client.quoted(2) == other.Info.ID and client.texts()[2] == "third"


def test_a_failed_quoted_send_is_not_retried_unquoted() -> None:
    client = SeamClient(send_fails=True)
    s, metrics = sender(client)
    assert s.send("c", "chat", "hi", quoted=wa.event(wa.text("!ping"))) == "failed"
    assert len(client.sent) == 1
    assert metrics.value("wabot_messages_dropped_total", reason="send_failed") == 1
    assert metrics.value("wabot_replies_unquoted_total", reason="invalid_utf8") == 0


def test_an_unquotable_reply_whose_plain_send_fails_is_one_failed_send() -> None:
    client = SeamClient(send_fails=True)
    s, metrics = sender(client)
    assert s.send("c", "chat", "hi", quoted=bad_id_event()) == "failed"
    assert client.sent == [("chat", "hi")]
    assert metrics.value("wabot_messages_dropped_total", reason="send_failed") == 1
    assert metrics.value("wabot_replies_unquoted_total", reason="invalid_utf8") == 0
