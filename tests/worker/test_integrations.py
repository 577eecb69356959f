"""The worker's side of the integrations: settings.welcomeText, POST /v1/messages (the send API
the gateway forwards to) and spec.proxy handed to neonize's real connect()."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from botworker.worker import Worker
from wabot.spec import WhatsAppBotSpec, WorkerState
from wabot.specread import dump

from .conftest import Harness, recording_client, wait_for, worker_config
from .test_connection import Reports

Make = Callable[..., Harness]
TOKEN = "bot-api-token-0123456789abcdef"


def spec(**kw: Any) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": "tenant-a", "botId": "bot-a", **kw})


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record with all its fields (the JSON log lines carry the extras too)."""
    return "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)


# --- settings.welcomeText --------------------------------------------------------------------


def test_welcome_text_once_per_chat(make_worker: Make) -> None:
    h = make_worker(spec(settings={"welcomeText": "Hi! Send !help to see what I can do."}))
    h.say("hello", chat="15550001111")
    wait_for(lambda: len(h.client.sent) == 1, what="the welcome")
    assert h.client.replies()[0][:2] == ("15550001111",
                                          "Hi! Send !help to see what I can do.")
    assert h.client.replies()[0][2] == ""  # not a reply to the message: no quote
    h.say("hello again", chat="15550001111")
    assert h.ask("!ping", chat="15550001111").startswith("pong")
    h.settle()
    assert len(h.client.sent) == 2  # the welcome and the pong, no second welcome
    h.say("hi", chat="15550002222")  # another chat is greeted too
    wait_for(lambda: len(h.client.sent) == 3, what="the second chat's welcome")
    assert h.client.replies()[2][0] == "15550002222"
    assert h.metric("wabot_messages_sent_total") == 3


def test_welcome_text_not_in_groups_and_not_without_the_setting(make_worker: Make) -> None:
    h = make_worker(spec(settings={"welcomeText": "Welcome!", "ignoreGroups": False}))
    h.say("hello all", group=True, chat="120363000000000001", sender="15550002222")
    h.settle()
    assert h.client.sent == []
    plain = make_worker(spec(botId="bot-b"), bot="bot-b")
    plain.say("hello")
    plain.settle()
    assert plain.client.sent == []


def test_greeted_chats_survive_a_restart(make_worker: Make) -> None:
    s = spec(settings={"welcomeText": "Welcome!"})
    first = make_worker(s)
    first.say("hello", chat="15550001111")
    wait_for(lambda: len(first.client.sent) == 1, what="the welcome")
    first.settle()
    assert first.worker.stop(5.0)
    second = make_worker(s)
    second.say("hello after the restart", chat="15550001111")
    second.settle()
    assert second.client.sent == []


def test_welcome_text_goes_through_the_rate_limit(make_worker: Make) -> None:
    h = make_worker(spec(settings={"welcomeText": "Welcome!"},
                         rateLimit={"perChatPerMinute": 1}))
    h.say("!ping", chat="15550001111")
    h.settle()
    # The welcome took the chat's one message this minute; the pong was not sent.
    assert [t for _, t, _ in h.client.replies()] == ["Welcome!"]
    assert h.metric("wabot_messages_dropped_total", reason="rate_limited") == 1


# --- POST /v1/messages -------------------------------------------------------------------------


def post(h: Harness, body: Any, *, token: str | None = TOKEN, key: str | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    assert h.worker.http is not None
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}/v1/messages",
                                 data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if key is not None:
        req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


@pytest.fixture
def api_worker(make_worker: Make) -> Callable[..., Harness]:
    def make(s: WhatsAppBotSpec | None = None, **kw: Any) -> Harness:
        return make_worker(s, env={"WABOT_API_TOKEN": TOKEN}, **kw)
    return make


def test_send_api_needs_the_bots_token(api_worker: Callable[..., Harness]) -> None:
    h = api_worker()
    for token in (None, "wrong-token-wrong-token", TOKEN + "x"):
        status, _, body = post(h, {"to": "15550001111", "text": "hi"}, token=token)
        assert status == 401 and body["error"] == "unauthorized"
    assert h.client.sent == []


def test_send_api_is_off_without_a_token(make_worker: Make) -> None:
    h = make_worker()
    assert h.worker.http is not None
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}/v1/messages",
                                 data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 404


def test_send_api_sends_through_neonize(api_worker: Callable[..., Harness]) -> None:
    h = api_worker()
    status, _, body = post(h, {"to": "+15550001111", "text": "Your order shipped."})
    assert status == 200, body
    assert body["status"] == "sent" and body["messageId"] == "S1"
    assert body["to"] == "15550001111@s.whatsapp.net"
    assert (body["bot"], body["serverName"]) == ("bot-a", "tenant-a")
    assert h.client.replies() == [("15550001111", "Your order shipped.", "")]
    status, _, body = post(h, {"to": "120363000000000001@g.us", "text": "to a group"})
    assert status == 200 and h.client.sent[-1][0].Server == "g.us"
    assert h.metric("wabot_api_requests_total", result="sent") == 2


def test_idempotency_key_sends_once_and_replays_the_answer(
        api_worker: Callable[..., Harness]) -> None:
    h = api_worker()
    req = {"to": "15550001111", "text": "exactly once"}
    first = post(h, req, key="order-42")
    again = post(h, req, key="order-42")
    assert first[0] == again[0] == 200
    assert again[2] == first[2]
    assert again[1].get("Idempotent-Replayed") == "true"
    assert len(h.client.sent) == 1
    other = post(h, {**req, "text": "something else"}, key="order-42")
    assert other[0] == 409 and other[2]["error"] == "idempotency_key_reused"
    assert len(h.client.sent) == 1
    assert post(h, req, key="order-43")[0] == 200  # a new key is a new message
    assert len(h.client.sent) == 2


def test_idempotency_keys_survive_a_restart(api_worker: Callable[..., Harness]) -> None:
    first = api_worker()
    req = {"to": "15550001111", "text": "once, even across restarts"}
    answer = post(first, req, key="k-1")
    assert first.worker.stop(5.0)
    second = api_worker()
    replay = post(second, req, key="k-1")
    assert replay[0] == 200 and replay[2] == answer[2]
    assert second.client.sent == []


def test_send_api_applies_the_bots_rate_limits(api_worker: Callable[..., Harness]) -> None:
    h = api_worker(spec(rateLimit={"perChatPerMinute": 2}))
    assert post(h, {"to": "15550001111", "text": "1"})[0] == 200
    assert post(h, {"to": "15550001111", "text": "2"})[0] == 200
    status, headers, body = post(h, {"to": "15550001111", "text": "3"}, key="retry-me")
    assert status == 429 and body["error"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 30
    assert body["retryAfterSeconds"] == int(headers["Retry-After"])
    assert len(h.client.sent) == 2
    # Another chat has its own budget; a refused key is not remembered (retry later works).
    assert post(h, {"to": "15550002222", "text": "other chat"})[0] == 200
    assert h.worker.api is not None
    assert h.worker._idempotency is not None
    assert h.worker._idempotency.begin("retry-me", "x") is None  # the key is free


def test_send_api_when_not_connected(api_worker: Callable[..., Harness]) -> None:
    h = api_worker(connect=False)
    status, _, body = post(h, {"to": "15550001111", "text": "hi"}, key="k")
    assert status == 503 and body["error"] == "bot_not_connected"
    assert h.client.sent == []


@pytest.mark.parametrize(("body", "field"), [
    ({"to": "not-a-number", "text": "x"}, "to"),
    ({"to": "15550001111"}, "text"),
    ({"to": "15550001111", "text": ""}, "text"),
    ({"to": "15550001111", "text": "x" * 4097}, "text"),
    ({"to": "15550001111", "text": "x", "priority": "high"}, "priority"),
    ({"text": "x"}, "to"),
    ([1, 2], "body"),
])
def test_malformed_bodies_are_422_naming_the_field(api_worker: Callable[..., Harness],
                                                   body: Any, field: str) -> None:
    h = api_worker()
    status, _, answer = post(h, body)
    assert status == 422 and answer["field"] == field, answer
    assert answer["message"].startswith(field)


def test_invalid_json_and_bad_keys_are_422(api_worker: Callable[..., Harness]) -> None:
    h = api_worker()
    status, _, answer = post(h, None, raw=b"{not json")
    assert status == 422 and answer["field"] == "body"
    status, _, answer = post(h, {"to": "15550001111", "text": "x"}, key="has space")
    assert status == 422 and answer["field"] == "Idempotency-Key"
    assert h.client.sent == []


# --- spec.proxy ---------------------------------------------------------------------------------


class FakeProxy:
    """A TCP listener that records the first bytes a client sends and hangs up: enough to see
    whether, and how, whatsmeow dialled through it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                self.received.append(conn.recv(4096))
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_proxy() -> Iterator[FakeProxy]:
    p = FakeProxy()
    yield p
    p.close()


def real_session_worker(tmp_path: Path, proxy_url: str, reports: Reports | None = None
                        ) -> Worker:
    """A worker whose session really dials: neonize's own connect(), as in production."""
    cfg = worker_config(tmp_path, "bot-a", "tenant-a", WABOT_PROXY_URL=proxy_url)
    cfg.session_dir.mkdir(parents=True, exist_ok=True)
    client = recording_client(str(cfg.session_path))
    w = Worker(cfg, spec(), client=client, sessions_enabled=True, terminal=False,
               reporter=reports)
    w.start()
    return w


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_the_proxy_is_what_neonize_dials(tmp_path: Path, fake_proxy: FakeProxy, scheme: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reports = Reports()
    w = real_session_worker(tmp_path, f"{scheme}://alice:pr0xy-pa55@127.0.0.1:"
                                      f"{fake_proxy.port}", reports)
    try:
        wait_for(lambda: fake_proxy.received, timeout=30, what="a dial through the proxy")
        first = fake_proxy.received[0]
        if scheme == "http":
            assert first.startswith(b"CONNECT web.whatsapp.com:443 HTTP/1.1\r\n")
            creds = base64.b64encode(b"alice:pr0xy-pa55").decode()
            assert f"Proxy-Authorization: Basic {creds}".encode() in first
        else:
            assert first[0] == 5  # SOCKS version 5 greeting
            assert 2 in first[2:2 + first[1]]  # offers user/password authentication
        # The dial fails (the fake proxy hangs up); the error reported has no credentials.
        wait_for(lambda: reports.items and reports.last.last_error, timeout=30,
                 what="the failed dial reported")
        assert w.connection.state.error_reason is None  # a dial failure, not a config error
    finally:
        w.stop(10.0)
    for rep in reports.items:
        assert "pr0xy-pa55" not in json.dumps(dump(rep))
    assert "pr0xy-pa55" not in log_text(caplog)
    # The proxy is named in the log, without its credentials.
    shown = [r.proxy for r in caplog.records if hasattr(r, "proxy")]
    assert shown and shown[0] == f"{scheme}://***@127.0.0.1:{fake_proxy.port}"


@pytest.mark.parametrize(("url", "needle"), [
    ("ftp://bob:hunter2-secret@proxy.example:21", "unsupported proxy scheme 'ftp'"),
    ("http://bob:hunter2-secret@proxy.example:99999", "cannot be parsed"),
    ("proxy.example:3128", "no scheme"),
    ("socks5://bob:hunter2-secret@/", "no host"),
    ("http://bob:hunter2-secret@proxy.example:3128/path?x=1", "only"),
])
def test_a_bad_proxy_url_is_reported_and_never_dialled(
        tmp_path: Path, url: str, needle: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reports = Reports()
    w = real_session_worker(tmp_path, url, reports)
    try:
        wait_for(lambda: reports.items and reports.last.error_reason == "InvalidProxy",
                 what="InvalidProxy reported")
        rep = reports.last
        assert rep.state is WorkerState.DISCONNECTED
        assert rep.last_error is not None and needle in rep.last_error
        assert w.connection.state.sessions_started == 0  # never dialled without the proxy
        assert w.connection.sync()
        ready, detail = w.ready()
        assert not ready and detail.startswith("InvalidProxy: invalid proxy URL")
        assert w.live()[0]  # alive, and saying why it does not connect
    finally:
        w.stop(5.0)
    assert all("hunter2" not in json.dumps(dump(r)) for r in reports.items)
    assert "hunter2" not in log_text(caplog)
