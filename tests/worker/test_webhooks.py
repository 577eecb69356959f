"""Webhooks as a receiver sees them: real neonize events through the real dispatcher, deliveries
to a real HTTP server on 127.0.0.1 that checks every signature independently."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wabot.events import WebhookPayload, verify
from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, wait_for
from .receiver import Receiver
from .test_connection import qr_callback

Make = Callable[..., Harness]
KEY = "whsec-0123456789-abcdefghij-SIGNING"
# The receivers listen on 127.0.0.1, which the egress policy refuses unless the admin
# allow-lists it (tests/security/test_webhook_egress.py): these tests are that admin.
LOOPBACK_ALLOWED = {"WABOT_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32"}
# Short backoff so a "down for a while" receiver is retried quickly in the test.
FAST = {"WABOT_WEBHOOK_SECRET": KEY, "WABOT_WEBHOOK_BACKOFF_CAP_SECONDS": "0.3",
        **LOOPBACK_ALLOWED}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(KEY.encode()).start()
    yield r
    if r.gate is not None:
        r.gate.set()
    r.stop()


def hook_spec(url: str, events: list[str], **kw: Any) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({
        "serverName": "tenant-a", "botId": "bot-a",
        "webhook": {"url": url, "secretRef": {"name": "hook"}, "events": events}, **kw})


def test_every_delivery_is_signed_and_verifiable(make_worker: Make, receiver: Receiver,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = make_worker(hook_spec(receiver.url, ["message", "command"]), env=FAST)
    ev = h.say("!ping", chat="15550001111")
    wait_for(lambda: len(receiver.accepted()) == 2, what="message and command deliveries")
    message, command = receiver.accepted()
    for d in (message, command):
        assert d.signature_ok
        assert d.headers["content-type"] == "application/json"
        assert d.headers["x-wabot-signature"].startswith("sha256=")
        assert verify(KEY.encode(), d.headers["x-wabot-timestamp"], d.body,
                      d.headers["x-wabot-signature"], now=time.time())
        # A wrong key does not verify: the signature really depends on it.
        assert not verify(b"another key", d.headers["x-wabot-timestamp"], d.body,
                          d.headers["x-wabot-signature"], now=time.time())
        payload = WebhookPayload.model_validate_json(d.body)
        assert payload.id == d.delivery_id
        assert payload.event == d.headers["x-wabot-event"]
        assert (payload.bot, payload.server_name) == ("bot-a", "tenant-a")
    assert message.payload["event"] == "message"
    assert message.payload["data"]["text"] == "!ping"
    assert message.payload["data"]["messageId"] == ev.Info.ID
    assert message.payload["data"]["chat"] == "15550001111@s.whatsapp.net"
    assert command.payload["data"]["command"] == "ping"
    assert command.payload["data"]["result"] == "ok"
    # The receiver records a delivery before it answers: the worker counts it after.
    wait_for(lambda: h.metric("wabot_webhook_deliveries_total", result="sent") == 2,
             what="both counted as sent")
    wait_for(lambda: h.metric("wabot_webhook_queue_depth") == 0, what="queue empty")
    assert "wabot_webhook_delivery_duration_seconds_count" in h.worker.metrics.render().decode()
    assert KEY not in caplog.text


def test_only_the_configured_events_are_sent(make_worker: Make, receiver: Receiver) -> None:
    h = make_worker(hook_spec(receiver.url, ["command"]), env=FAST)
    h.say("hello, no command here")
    h.ask("!ping")
    wait_for(lambda: len(receiver.accepted()) == 1, what="one delivery")
    h.settle()
    assert [d.payload["event"] for d in receiver.accepted()] == ["command"]


def test_receiver_down_for_a_while_then_back(make_worker: Make, receiver: Receiver) -> None:
    receiver.stop()  # connections refused
    h = make_worker(hook_spec(receiver.url, ["message"]), env=FAST)
    ids = [h.say(f"hello {i}").Info.ID for i in range(5)]
    wait_for(lambda: h.metric("wabot_webhook_deliveries_total", result="retried") >= 3,
             what="failed attempts being retried")
    assert h.worker.webhooks.depth == 5
    assert h.metric("wabot_webhook_queue_depth") == 5
    receiver.start()
    wait_for(lambda: h.metric("wabot_webhook_deliveries_total", result="sent") == 5,
             timeout=15, what="the backlog delivered")
    unique = receiver.unique()
    assert len(unique) == 5
    assert [d.payload["data"]["messageId"] for d in unique.values()] == ids  # in order
    assert all(d.signature_ok for d in receiver.accepted())
    assert h.metric("wabot_webhook_queue_depth") == 0
    assert h.metric("wabot_webhook_deliveries_total", result="dropped") == 0


def test_a_failing_receiver_is_retried_until_it_answers_2xx(make_worker: Make,
                                                           receiver: Receiver) -> None:
    receiver.status = 503
    h = make_worker(hook_spec(receiver.url, ["message"]), env=FAST)
    h.say("hello")
    wait_for(lambda: len(receiver.deliveries) >= 3, what="three attempts")
    attempts = list(receiver.deliveries)
    assert len({d.delivery_id for d in attempts}) == 1  # one event, retried
    assert len({d.body for d in attempts}) == 1  # the same body every time
    assert all(d.signature_ok for d in attempts)  # each attempt signed afresh
    receiver.status = 200
    wait_for(lambda: h.metric("wabot_webhook_deliveries_total", result="sent") == 1,
             what="delivered once the receiver answers 200")
    assert len(receiver.unique()) == 1


def test_a_slow_receiver_never_blocks_the_pipeline(make_worker: Make,
                                                   receiver: Receiver) -> None:
    receiver.gate = gate = __import__("threading").Event()
    h = make_worker(hook_spec(receiver.url, ["message", "command"]), env=FAST)
    h.say("first")
    wait_for(lambda: receiver.waiting == 1, what="a delivery hanging at the receiver")
    # While that delivery hangs, commands are answered as usual and more events queue up.
    assert h.ask("!ping").startswith("pong")
    assert h.ask("!info").startswith("Bot bot-a")
    assert receiver.waiting == 1 and not receiver.deliveries
    # The queue is written by its own thread, so the last events land a moment later.
    wait_for(lambda: h.worker.webhooks.depth >= 4, what="the later events queued")
    gate.set()
    wait_for(lambda: len(receiver.unique()) == 5, what="everything delivered after release")
    events = [d.payload["event"] for d in receiver.unique().values()]
    assert events == ["message", "message", "command", "message", "command"]


def test_undelivered_events_survive_a_restart(make_worker: Make, receiver: Receiver,
                                              tmp_path: Path) -> None:
    receiver.stop()
    spec = hook_spec(receiver.url, ["message"])
    first = make_worker(spec, env=FAST)
    ids = [first.say(f"before restart {i}").Info.ID for i in range(3)]
    wait_for(lambda: first.metric("wabot_webhook_deliveries_total", result="retried") >= 1,
             what="a failed attempt")
    first.settle()
    assert first.worker.stop(5.0)
    assert first.metric("wabot_webhook_deliveries_total", result="sent") == 0

    receiver.start()
    second = make_worker(spec, env=FAST)
    wait_for(lambda: len(receiver.unique()) == 3, timeout=15,
             what="the previous process's events delivered")
    assert [d.payload["data"]["messageId"] for d in receiver.unique().values()] == ids
    wait_for(lambda: second.metric("wabot_webhook_deliveries_total", result="sent") == 3,
             what="counted as sent")


def test_the_queue_is_bounded_and_drops_the_oldest(make_worker: Make,
                                                   receiver: Receiver) -> None:
    receiver.stop()
    h = make_worker(hook_spec(receiver.url, ["message"]),
                    env={**FAST, "WABOT_WEBHOOK_QUEUE_MAX": "3"})
    ids = []
    for i in range(6):
        ids.append(h.say(f"m{i}").Info.ID)
        # One at a time, so "the oldest" is well defined: each is on disk before the next.
        h.settle()
        wait_for(lambda: h.worker.webhooks.in_memory == 0, what="event written")
        assert h.worker.webhooks.depth == min(i + 1, 3)
    wait_for(lambda: h.metric("wabot_webhook_deliveries_total", result="dropped") == 3,
             what="three dropped")
    receiver.start()
    wait_for(lambda: len(receiver.unique()) == 3, timeout=15, what="the newest three")
    got = [d.payload["data"]["messageId"] for d in receiver.unique().values()]
    assert got == ids[-3:]


def test_an_event_older_than_the_maximum_age_is_given_up(make_worker: Make,
                                                        receiver: Receiver) -> None:
    receiver.stop()
    h = make_worker(hook_spec(receiver.url, ["message"]),
                    env={**FAST, "WABOT_WEBHOOK_MAX_AGE_SECONDS": "1"})
    h.say("too late")
    wait_for(lambda: h.metric("wabot_webhook_deliveries_total", result="failed") == 1,
             timeout=10, what="given up")
    assert h.worker.webhooks.depth == 0


def test_connection_and_pairing_events(make_worker: Make, receiver: Receiver) -> None:
    from neonize.events import ConnectedEv

    h = make_worker(hook_spec(receiver.url, ["connection", "pairing"]), env=FAST,
                    connect=False)
    qr_callback(h.client, b"2@qr-payload,abc")
    h.feed(ConnectedEv(status=True))
    wait_for(lambda: any(d.payload["event"] == "connection" and
                         d.payload["data"]["state"] == "Connected" for d in receiver.accepted()),
             what="connected event")
    pairing = [d.payload for d in receiver.accepted() if d.payload["event"] == "pairing"]
    assert pairing and pairing[0]["data"]["method"] == "qr"
    assert pairing[0]["data"]["qr"] == "2@qr-payload,abc"
    states = [(d.payload["data"]["previousState"], d.payload["data"]["state"])
              for d in receiver.accepted() if d.payload["event"] == "connection"]
    assert ("Pairing", "Connected") in states


def test_without_a_signing_key_nothing_is_sent_unsigned(make_worker: Make, receiver: Receiver,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    h = make_worker(hook_spec(receiver.url, ["message"]), env=LOOPBACK_ALLOWED)
    h.say("hello")
    wait_for(lambda: "no signing key" in caplog.text, what="the error logged")
    assert not receiver.deliveries
    assert h.worker.webhooks.depth == 1  # kept, not lost


def test_signature_scheme_matches_the_readme_example() -> None:
    """The README's verification snippet, checked against a fixed vector."""
    body = b'{"id":"abc","event":"message"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    from wabot.events import sign

    assert sign(b"s3cret", "1700000000", body) == "sha256=" + expected
    assert verify(b"s3cret", "1700000000", body, "sha256=" + expected, now=1_700_000_100)
    assert not verify(b"s3cret", "1700000000", body, "sha256=" + expected,
                      now=1_700_000_000 + 3600)  # too old: a replay


def _readme_block(lang: str, needle: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Receiving webhooks", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split(f"```{lang}\n")[1:]]
    (block,) = [b for b in blocks if needle in b]
    return block


def test_the_readme_snippets_verify_a_real_delivery(make_worker: Make, receiver: Receiver,
                                                    tmp_path: Path) -> None:
    """The README's Python function and its openssl one-liner, run on a delivery the worker
    really made: both accept it, and both refuse it with one byte of the body changed."""
    import shutil
    import subprocess

    h = make_worker(hook_spec(receiver.url, ["message"]), env=FAST)
    h.say("check me")
    wait_for(lambda: receiver.accepted(), what="a delivery")
    d = receiver.accepted()[0]
    headers = {"X-Wabot-Timestamp": d.headers["x-wabot-timestamp"],
               "X-Wabot-Signature": d.headers["x-wabot-signature"]}
    namespace: dict[str, Any] = {}
    exec(_readme_block("python", "def verify"), namespace)
    assert namespace["verify"](KEY.encode(), headers, d.body)
    assert not namespace["verify"](KEY.encode(), headers, d.body.replace(b"check", b"chuck"))

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to check the README's shell snippet")
    script = _readme_block("sh", "openssl dgst")
    for body, verdict in ((d.body, "valid"), (d.body.replace(b"check", b"chuck"), "INVALID")):
        (tmp_path / "body.json").write_bytes(body)
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                             text=True, env={"PATH": "/usr/bin:/bin", "TS": headers[
                                 "X-Wabot-Timestamp"], "SIG": headers["X-Wabot-Signature"],
                                 "WEBHOOK_KEY": KEY})
        assert out.stdout.strip() == verdict, out.stderr
