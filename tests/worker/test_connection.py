"""The session lifecycle driven by real neonize events (through the real dispatcher) and the
real QR callback, as the status and the probes show it."""

from __future__ import annotations

import ctypes
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from neonize.events import (
    ConnectedEv,
    DisconnectedEv,
    LoggedOutEv,
    StreamReplacedEv,
    TemporaryBanEv,
)

from botworker.core import lifecycle as lc
from botworker.core.backoff import BackoffPolicy
from wabot.spec import WhatsAppBotSpec, WorkerReport, WorkerState
from wabot.specread import dump

from .conftest import Harness, recording_client, wait_for, worker_config

Make = Callable[..., Harness]


class Reports:
    """Collects what the worker publishes to status.worker."""

    def __init__(self) -> None:
        self.items: list[WorkerReport] = []
        self._lock = threading.Lock()

    def publish(self, report: WorkerReport) -> None:
        with self._lock:
            self.items.append(report)

    def start(self) -> None: ...

    def flush(self, timeout_s: float) -> bool:
        return True

    def stop(self) -> None: ...

    @property
    def last(self) -> WorkerReport:
        with self._lock:
            return self.items[-1]

    def wait_state(self, state: WorkerState) -> WorkerReport:
        wait_for(lambda: self.items and self.last.state is state, what=f"state {state}")
        return self.last


def qr_callback(client: Any, payload: bytes) -> None:
    """Call the client's QR entry point exactly as Go does: a C string at an address."""
    buf = ctypes.create_string_buffer(payload)
    client._NewClient__onQr(0, ctypes.addressof(buf))


def test_connected_then_dropped_then_back(make_worker: Make) -> None:
    reports = Reports()
    h = make_worker(connect=False, reporter=reports)
    assert h.worker.ready() == (False, "state Connecting")
    h.feed(ConnectedEv(status=True))
    rep = reports.wait_state(WorkerState.CONNECTED)
    assert rep.pod_name == "pod-bot-a" and rep.last_connected_at is not None
    assert h.worker.ready() == (True, "")
    assert h.metric("wabot_connected") == 1

    h.feed(DisconnectedEv(status=True))
    reports.wait_state(WorkerState.DISCONNECTED)
    assert h.worker.ready()[0] is False
    assert h.metric("wabot_reconnects_total") == 1
    # Not connected: a command is not answered (the reply would not reach anyone).
    h.say("!ping")
    h.settle()
    assert h.client.sent == []
    assert h.metric("wabot_messages_dropped_total", reason="not_connected") == 1

    h.feed(ConnectedEv(status=True))
    reports.wait_state(WorkerState.CONNECTED)
    assert h.ask("!ping").startswith("pong")


def test_logged_out_parks_the_worker(make_worker: Make) -> None:
    reports = Reports()
    h = make_worker(reporter=reports)
    h.feed(LoggedOutEv(OnConnect=False, Reason=2))
    rep = reports.wait_state(WorkerState.LOGGED_OUT)
    assert rep.account is None
    assert rep.last_error is not None and "LOGGED_OUT" in rep.last_error
    assert "pair" in rep.last_error
    wait_for(lambda: not h.worker.connection.state.session_running, what="session stopped")
    # Parked: it does not reconnect, and a late Connected event does not revive it.
    h.feed(ConnectedEv(status=True))
    assert h.worker.connection.sync()
    assert h.worker.connection.state.state is WorkerState.LOGGED_OUT
    assert h.worker.connection.state.sessions_started == 1
    assert h.worker.ready()[0] is False
    assert h.worker.live() == (True, "")


def test_stream_replaced_does_not_fight(make_worker: Make) -> None:
    reports = Reports()
    h = make_worker(reporter=reports)
    h.feed(StreamReplacedEv())
    rep = reports.wait_state(WorkerState.STREAM_REPLACED)
    assert rep.last_error is not None and "not reconnecting" in rep.last_error
    wait_for(lambda: not h.worker.connection.state.session_running, what="session stopped")
    assert h.worker.connection.state.retry_at is None


def test_temporary_ban_waits_as_long_as_told(make_worker: Make) -> None:
    reports = Reports()
    h = make_worker(reporter=reports)
    before = time.time()
    h.feed(TemporaryBanEv(Code=1, Expire=3600))
    rep = reports.wait_state(WorkerState.TEMPORARY_BAN)
    assert rep.last_error is not None and "SEND_TO_TOO_MANY_PEOPLE" in rep.last_error
    st = h.worker.connection.state
    assert st.retry_at is not None
    assert before + 3600 <= st.retry_at <= time.time() + 3600 + 30
    wait_for(lambda: not h.worker.connection.state.session_running, what="session stopped")


def test_qr_codes_are_published_with_their_expiry(make_worker: Make) -> None:
    reports = Reports()
    h = make_worker(connect=False, reporter=reports)
    t0 = time.time()
    qr_callback(h.client, b"2@first-payload,abc,def")
    rep = reports.wait_state(WorkerState.PAIRING)
    assert rep.pairing is not None and rep.pairing.method == "qr"
    assert rep.pairing.qr == "2@first-payload,abc,def"
    assert rep.pairing.expires_at is not None
    assert t0 + 59 <= rep.pairing.expires_at.timestamp() <= time.time() + 61
    qr_callback(h.client, b"2@second-payload")
    wait_for(lambda: reports.last.pairing and reports.last.pairing.qr == "2@second-payload")
    second = reports.last.pairing
    assert second is not None and second.expires_at is not None
    assert second.expires_at.timestamp() <= time.time() + 21
    # Once paired and connected, the pairing payload disappears from the status.
    h.feed(ConnectedEv(status=True))
    assert reports.wait_state(WorkerState.CONNECTED).pairing is None


def test_pairing_code_is_requested_from_the_qr_callback(make_worker: Make) -> None:
    """In code mode the worker calls neonize's PairPhone from the QR callback. Without a socket
    the real PairPhone refuses ("client is nil"); the refusal must reach the status."""
    reports = Reports()
    spec = WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-a", "botId": "bot-a",
         "pairing": {"method": "code", "phoneNumber": "4915112345678"}}
    )
    h = make_worker(spec, connect=False, reporter=reports)
    qr_callback(h.client, b"2@ignored-in-code-mode")
    wait_for(lambda: reports.items and reports.last.last_error, what="a pairing error")
    assert "pairing failed" in (reports.last.last_error or "")
    assert "client is nil" in (reports.last.last_error or "")
    assert reports.last.pairing is None  # no QR published in code mode


def test_losing_the_lease_fences_the_bot(make_worker: Make) -> None:
    reports = Reports()
    h = make_worker(reporter=reports)
    assert h.ask("!ping").startswith("pong")
    h.worker.connection.post(lc.LeaseLost("taken over by pod-2"))
    rep = reports.wait_state(WorkerState.DISCONNECTED)
    assert rep.last_error == "lease lost: taken over by pod-2"
    wait_for(lambda: not h.worker.connection.state.session_running, what="session stopped")
    assert h.worker.ready() == (False, "waiting for the Lease")
    h.say("!ping")
    h.settle()
    assert len(h.client.sent) == 1  # nothing more said without the Lease


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_health_endpoints(make_worker: Make) -> None:
    h = make_worker(connect=False)
    assert h.worker.http is not None
    base = f"http://127.0.0.1:{h.worker.http.port}"
    assert _get(base + "/livez") == (200, "ok\n")
    code, body = _get(base + "/readyz")
    assert code == 503 and "Connecting" in body
    h.connect()
    assert _get(base + "/readyz") == (200, "ok\n")
    h.ask("!ping")
    code, text = _get(base + "/metrics")
    assert code == 200
    for name in (
        'wabot_messages_received_total{bot="bot-a",server_name="tenant-a"} 1.0',
        'wabot_messages_sent_total{bot="bot-a",server_name="tenant-a"} 1.0',
        'wabot_commands_total{bot="bot-a",command="ping",result="ok",server_name="tenant-a"} 1.0',
        'wabot_connection_state{bot="bot-a",server_name="tenant-a",state="Connected"} 1.0',
        'wabot_connected{bot="bot-a",server_name="tenant-a"} 1.0',
        "wabot_command_duration_seconds_bucket",
        "wabot_reconnects_total",
        "wabot_db_up",
        "wabot_audit_spool_rows",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert "15550001111" not in text  # no chat or phone numbers in labels
    assert _get(base + "/nope")[0] == 404


def test_real_dial_failures_back_off_and_are_reported(tmp_path: Path) -> None:
    """With no WhatsApp reachable, neonize's real connect() fails; the worker retries with
    backoff, reports the error and stays live."""
    from botworker.worker import Worker

    cfg = worker_config(tmp_path)
    client = recording_client(str(cfg.session_path))
    reports = Reports()
    policy = lc.Policy(backoff=BackoffPolicy(base_s=0.2, cap_s=0.5, min_s=0.1))
    w = Worker(cfg, WhatsAppBotSpec(server_name="tenant-a", bot_id="bot-a"), client=client,
               reporter=reports, terminal=False, policy=policy, http=False)
    w.start()
    try:
        wait_for(lambda: reports.items and reports.last.reconnects >= 2, timeout=120,
                 what="two reconnects reported")
        wait_for(lambda: "NeonizeError" in (reports.last.last_error or ""), timeout=60,
                 what="the dial error reported")
        assert w.connection.state.sessions_started >= 3
        assert w.live() == (True, "")
        assert w.ready()[0] is False
    finally:
        assert w.stop(40.0)
    assert reports.last.state is WorkerState.STOPPED


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe not utf8"])
def test_odd_qr_payloads_do_not_break_pairing(make_worker: Make, payload: bytes) -> None:
    reports = Reports()
    h = make_worker(connect=False, reporter=reports)
    qr_callback(h.client, payload)
    rep = reports.wait_state(WorkerState.PAIRING)
    assert rep.pairing is not None
    json.dumps(dump(rep))  # publishable as JSON


def test_the_linked_account_comes_from_neonizes_device_event(make_worker: Make) -> None:
    """Go announces the device (event 0) and neonize keeps it as `client.me`; the account in
    the status comes from there, and messages from the bot's own number are not answered."""
    from neonize.proto.Neonize_pb2 import Device
    from neonize.utils import build_jid

    reports = Reports()
    h = make_worker(connect=False, reporter=reports)
    h.feed(Device(JID=build_jid("4915112345678"), PushName="Shop Bot"))
    h.feed(ConnectedEv(status=True))
    rep = reports.wait_state(WorkerState.CONNECTED)
    assert rep.account is not None
    assert (rep.account.jid, rep.account.push_name) == ("4915112345678@s.whatsapp.net",
                                                        "Shop Bot")
    h.say("!ping", chat="15550001111", sender="4915112345678")  # our number, another device
    h.settle()
    assert h.client.sent == []
    assert h.metric("wabot_messages_dropped_total", reason="own_message") == 1
