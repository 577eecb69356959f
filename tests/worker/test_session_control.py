"""Session control through the worker's API: log out (the phone unlinked through neonize's
`logout()`, the seam; the store wiped from the volume; the worker ends with EXIT_REPAIR and the
next process pairs), restart, a fresh QR or pairing code; each request acted on once."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from neonize.events import ConnectedEv, LoggedOutEv

from botworker.adapters.session_actions import load_record, record_path, save_record
from botworker.core import lifecycle as lc
from botworker.runtime.session_control import EXIT_REPAIR
from wabot.spec import WhatsAppBotSpec
from wabot.status import SessionActionStatus, WorkerState

from .account_client import AccountHarness, make_account_worker
from .conftest import wait_for
from .test_connection import Reports, qr_callback

__all__ = ["make_account_worker"]  # the fixture, imported for pytest
TOKEN = "session-api-token-0123456789"
Make = Callable[..., AccountHarness]


def call(h: AccountHarness, method: str, path: str, body: Any = None,
         key: str | None = None, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    assert h.worker.http is not None
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{h.worker.http.port}{path}", data=data,
                                 method=method, headers={"Authorization": f"Bearer {TOKEN}"})
    if key is not None:
        req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def linked_store(path: Path) -> None:
    """A store as whatsmeow leaves it once paired: a device row (and a WAL beside it)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS whatsmeow_device (jid TEXT)")
    db.execute("INSERT INTO whatsmeow_device VALUES ('4915100000001:7@s.whatsapp.net')")
    db.commit()
    db.close()
    path.with_name(path.name + "-wal").write_bytes(b"wal")


@pytest.fixture
def session_worker(make_account_worker: Make) -> Callable[..., tuple[AccountHarness, Reports,
                                                                     list[int]]]:
    def make(**kw: Any) -> tuple[AccountHarness, Reports, list[int]]:
        reports, exits = Reports(), []
        h = make_account_worker(env={"WABOT_API_TOKEN": TOKEN}, reporter=reports,
                                exit_request=exits.append, **kw)
        return h, reports, exits
    return make


def test_logout_unlinks_wipes_and_the_next_process_pairs(session_worker: Any) -> None:
    h, reports, exits = session_worker()
    store = h.worker.cfg.session_path
    linked_store(store)
    status, _, body = call(h, "POST", "/v1/session/logout", key="logout-1")
    assert status == 202, body
    assert body["result"] == "Succeeded" and body["requestId"] == "logout-1"
    assert "unlinked from the phone" in body["message"]
    assert h.world.called("logout") == [("logout",)]
    assert not store.exists() and not store.with_name(store.name + "-wal").exists()
    assert exits == [EXIT_REPAIR]
    assert not h.worker.connection.state.session_running
    rep = reports.wait_state(WorkerState.LOGGED_OUT)
    assert rep.account is None
    assert rep.session_action is not None and rep.session_action.result == "Succeeded"
    # The same request again: its outcome, nothing done twice.
    status, headers, again = call(h, "POST", "/v1/session/logout", key="logout-1")
    assert status == 202 and again["replayed"] is True
    assert headers.get("Idempotent-Replayed") == "true"
    assert len(h.world.called("logout")) == 1
    # The process ends (main.py turns exit_request into its exit code): the last report
    # stays LoggedOut, not Stopped, until the next process reports.
    assert h.worker.stop(5.0)
    assert reports.last.state is WorkerState.LOGGED_OUT

    nxt, reports2, _ = session_worker(connect=False)
    assert nxt.worker.cfg.session_path == store
    assert not nxt.worker.resuming  # nothing linked on the volume: pairs at once
    qr_callback(nxt.client, b"2@fresh-qr")
    rep = reports2.wait_state(WorkerState.PAIRING)
    assert rep.pairing is not None and rep.pairing.qr == "2@fresh-qr"
    assert rep.session_action is not None and rep.session_action.request_id == "logout-1"
    status, _, view = call(nxt, "GET", "/v1/session")
    assert status == 200 and view["state"] == "Pairing" and view["pairing"]["qr"] == "2@fresh-qr"


def test_logout_while_not_connected_wipes_without_the_phone(session_worker: Any) -> None:
    h, _, exits = session_worker(connect=False)
    linked_store(h.worker.cfg.session_path)
    status, _, body = call(h, "POST", "/v1/session/logout")
    assert status == 202 and body["result"] == "Succeeded"
    assert "Linked devices" in body["message"]
    assert h.world.called("logout") == []  # nothing to tell WhatsApp without a connection
    assert not h.worker.cfg.session_path.exists() and exits == [EXIT_REPAIR]


def test_a_refused_logout_keeps_the_session(session_worker: Any) -> None:
    h, _, exits = session_worker()
    linked_store(h.worker.cfg.session_path)
    h.world.fail["logout"] = "failed to send logout request: websocket not connected"
    status, _, body = call(h, "POST", "/v1/session/logout")
    assert status == 502 and body["error"] == "session_action_failed"
    assert h.worker.cfg.session_path.exists() and exits == []
    assert h.worker.ready()[0]  # still serving
    assert h.metric("wabot_account_operations_total", operation="session_logout",
                    result="failed") == 1


def test_restart_replaces_the_session(session_worker: Any) -> None:
    h, reports, _ = session_worker()
    assert h.worker.connection.state.sessions_started == 1
    status, _, body = call(h, "POST", "/v1/session/restart")
    assert status == 202 and body["result"] == "Succeeded"
    wait_for(lambda: h.worker.connection.state.sessions_started == 2, what="a new session")
    assert reports.wait_state(WorkerState.CONNECTING)
    h.feed(ConnectedEv(status=True))
    reports.wait_state(WorkerState.CONNECTED)


def test_pairing_code_on_request_once_unlinked(session_worker: Any) -> None:
    h, reports, _ = session_worker()
    # Paired (the account is known): a new pairing needs a logout first.
    h.worker.connection.post(lc.Connected(lc.Account("4915100000001@s.whatsapp.net")))
    assert h.worker.connection.sync()
    status, _, body = call(h, "POST", "/v1/session/pairing", {"method": "qr"})
    assert status == 409 and "log out first" in body["message"]
    # The phone unlinked the bot (whatsmeow deleted the device): parked until asked.
    h.feed(LoggedOutEv(OnConnect=False, Reason=2))
    reports.wait_state(WorkerState.LOGGED_OUT)
    status, _, body = call(h, "POST", "/v1/session/pairing",
                           {"method": "code", "phoneNumber": "+4915112345678"})
    assert status == 202, body
    wait_for(lambda: h.worker.connection.state.session_running, what="a new session")
    qr_callback(h.client, b"2@socket-up")  # the code is asked for once the socket is up
    rep = reports.wait_state(WorkerState.PAIRING)
    assert rep.pairing is not None and rep.pairing.code == "ABCD-EFGH"
    assert h.world.called("PairPhone") == [("PairPhone", "4915112345678")]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/session/pairing", {"method": "code", "phoneNumber": "12"}, "phoneNumber"),
    ("/v1/session/pairing", {"method": "sms"}, "method"),
    ("/v1/session/pairing", {"method": "qr", "extra": 1}, "extra"),
    ("/v1/session/logout", {"now": True}, "body"),
])
def test_bad_session_requests_are_422(session_worker: Any, path: str, body: Any,
                                      field: str) -> None:
    h, _, exits = session_worker()
    status, _, answer = call(h, "POST", path, body)
    assert status == 422 and answer["field"] == field, answer
    status, _, answer = call(h, "POST", "/v1/session/restart", key="bad key with spaces")
    assert status == 422 and answer["field"] == "Idempotency-Key"
    assert exits == [] and h.world.calls == []


def test_an_interrupted_logout_is_finished_at_the_next_start(session_worker: Any,
                                                             tmp_path: Path) -> None:
    h, _, _ = session_worker(connect=False)
    cfg = h.worker.cfg
    assert h.worker.stop(5.0)
    linked_store(cfg.session_path)
    save_record(record_path(cfg.session_dir), SessionActionStatus(
        request_id="r-9", action="logout", source="kubernetes", result="Started"))
    nxt, _, _ = session_worker(connect=False)
    assert not cfg.session_path.exists()
    assert not nxt.worker.resuming
    rec = load_record(record_path(cfg.session_dir))
    assert rec is not None and rec.result == "Succeeded" and rec.request_id == "r-9"


def test_the_annotations_pairing_follows_the_specs_method(session_worker: Any) -> None:
    """`wabot.io/session-action: pairing` (no body to say how) pairs the way the spec does:
    a bot that pairs by code gets a new code, not a QR."""
    spec = WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-a", "botId": "bot-a",
         "pairing": {"method": "code", "phoneNumber": "4915112345678"}})
    h, reports, _ = session_worker(spec=spec, connect=False)
    h.feed(LoggedOutEv(OnConnect=False, Reason=2))
    reports.wait_state(WorkerState.LOGGED_OUT)
    h.worker.session.on_object({"metadata": {"uid": "u", "annotations": {
        "wabot.io/session-action": "pairing", "wabot.io/session-action-id": "k-1"}}})
    wait_for(lambda: h.worker.session.last is not None
             and h.worker.session.last.request_id == "k-1", what="the annotation acted on")
    assert h.worker.session.last is not None and h.worker.session.last.result == "Succeeded"
    wait_for(lambda: h.worker.connection.state.session_running, what="a new session")
    qr_callback(h.client, b"2@socket-up")
    rep = reports.wait_state(WorkerState.PAIRING)
    assert rep.pairing is not None and rep.pairing.method == "code"
    assert h.world.called("PairPhone") == [("PairPhone", "4915112345678")]
