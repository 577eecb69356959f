"""Messages from people who want the bot to fall over. None of them may crash it, slow it
down for long, or make it speak more than its rate limits allow."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from neonize.events import MessageEv

from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, dispatch_raw, message_ev, wait_for

Make = Callable[..., Harness]


def spec(**kw: object) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": "tenant-a", "botId": "bot-a", **kw})


def test_a_one_megabyte_command_is_refused_quickly(make_worker: Make) -> None:
    h = make_worker()
    started = time.monotonic()
    reply = h.ask("!ping " + "A" * 1_000_000)
    assert reply == "That message is too long (the limit is 4096 characters)."
    assert time.monotonic() - started < 2.0
    h.say("x" * 1_000_000)  # not a command: ignored without a reply
    h.settle()
    assert len(h.client.sent) == 1
    assert h.ask("!ping").startswith("pong")


def test_invalid_utf8_from_the_wire_is_repaired(make_worker: Make, plugin_path: Path) -> None:
    """protobuf hands proto2 strings with invalid UTF-8 (a lone surrogate encoded as
    ED A0 80, stray FF FE) to Python as bytes; the worker must cope, not crash."""
    h = make_worker(spec(commands={"plugins": ["echo"]}))
    ev = message_ev("!echo XXXXXXX", msg_id="BADUTF8")
    raw = ev.SerializePartialToString().replace(b"XXXXXXX", b"\xff\xfe\xed\xa0\x80ok")
    before = len(h.client.sent)
    dispatch_raw(h.client, MessageEv, raw)
    wait_for(lambda: len(h.client.sent) > before, what="the reply")
    assert h.client.texts()[-1] == "args=\ufffd\ufffd\ufffd\ufffd\ufffdok"


def test_control_and_invisible_characters_are_stripped(
    make_worker: Make, plugin_path: Path
) -> None:
    h = make_worker(spec(commands={"plugins": ["echo"]}))
    assert h.ask("!echo a\x00b\x1bc\u202e\u200bd\x7f e\tf") == "args=abcd|e|f"
    # NFC: a decomposed 'é' and a composed one are the same argument.
    assert h.ask("!echo cafe\u0301") == "args=caf\u00e9"


def test_unbalanced_quotes_and_injection_arguments_are_plain_text(
    make_worker: Make, plugin_path: Path
) -> None:
    h = make_worker(spec(commands={"plugins": ["echo", "notes"]}))
    assert h.ask("!echo '; DROP TABLE audit_entry; --") == "args=; DROP TABLE audit_entry; --"
    assert h.ask('!echo "unterminated') == "args=unterminated"
    assert h.ask("!echo $(rm -rf /) `id` ${HOME}") == "args=$(rm|-rf|/)|`id`|${HOME}"
    # Through the database: stored and read back verbatim, nothing executed.
    wait_for(h.worker.datalayer.ensure_schema, timeout=60, what="schema")
    assert h.ask('!note evil "x\'); DROP TABLE key_value; --"') == "Saved note 'evil'."
    assert h.ask("!note evil") == "x'); DROP TABLE key_value; --"


def test_a_flood_from_one_chat_gets_at_most_the_chat_limit(make_worker: Make) -> None:
    h = make_worker(spec(rateLimit={"perChatPerMinute": 20, "perBotPerMinute": 60}))
    started = time.monotonic()
    for i in range(1000):
        h.say("!ping", chat="15559990000", msg_id=f"FLOOD{i}")
    h.settle()
    elapsed = time.monotonic() - started
    sent_to_flooder = [r for r in h.client.replies() if r[0] == "15559990000"]
    # 20 at once, then 20 a minute: at most one more per 3 s of test time.
    assert 20 <= len(sent_to_flooder) <= 20 + int(elapsed / 3) + 1
    received = h.metric("wabot_messages_received_total")
    dropped = h.metric("wabot_messages_dropped_total", reason="rate_limited") + h.metric(
        "wabot_messages_dropped_total", reason="queue_full"
    )
    assert received == 1000
    assert len(sent_to_flooder) + dropped == 1000
    # Another chat is not punished for the flooder, and the worker is healthy.
    assert h.ask("!ping", chat="15551112222").startswith("pong")
    assert h.worker.live() == (True, "")


def test_the_bot_limit_holds_across_many_chats(make_worker: Make) -> None:
    h = make_worker(spec(rateLimit={"perChatPerMinute": 5, "perBotPerMinute": 30}))
    started = time.monotonic()
    for i in range(200):
        h.say("!ping", chat=f"1555700{i:04d}")
    h.settle()
    elapsed = time.monotonic() - started
    assert 30 <= len(h.client.sent) <= 30 + int(elapsed * 30 / 60) + 1


def test_a_full_queue_drops_and_counts_instead_of_blocking_neonize(make_worker: Make) -> None:
    """neonize's callback thread must never wait: with the consumer stalled, the queue fills
    and the surplus is dropped and counted while every dispatch returns at once."""
    import threading

    h = make_worker(spec(commands={"custom": [{"name": "slow", "response": "done"}]}))
    gate = threading.Event()
    original = h.worker.pipeline.process

    def stalled(ev: object) -> None:
        gate.wait(10)
        original(ev)

    h.worker.pipeline.process = stalled  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        for i in range(1100):
            h.say("hello", msg_id=f"Q{i}")
        assert time.monotonic() - started < 5.0
        wait_for(lambda: h.metric("wabot_messages_dropped_total", reason="queue_full") >= 99)
    finally:
        gate.set()
    h.settle()
    assert h.ask("!slow") == "done"
