"""Audit rows written with the driver alone (botworker/data/auditrows.py), on SQLite: stored
exactly as the ORM stores and reads them, written once however often a spool is replayed,
never for another tenant, and a database that cannot be opened is reported as unavailable
(the writer then spools) and picked up again once it can."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from botworker.core.context import CrossTenantWrite, DatabaseUnavailable
from botworker.data.auditrows import AuditRows
from botworker.data.db import Database
from botworker.data.health import Health
from botworker.data.migrate import upgrade
from botworker.data.models import AuditEntry

from .conftest import worker_process_env


def row(tenant: str = "acme", command: str = "ping", **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "server_name": tenant, "bot_id": "bot", "chat": "c",
            "sender_hash": "h", "command": command, "result": "ok", "latency_ms": 3,
            "created_at": "2030-01-02T03:04:05.678901+00:00", **extra}


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade(u)
    return u


def stored(url: str, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return list(conn.execute(sql).fetchall())


def test_rows_are_stored_as_the_orm_stores_and_reads_them(url: str) -> None:
    audit = AuditRows(url, "acme")
    r = row()
    audit.insert_audit([r])
    db = Database(url, "acme")
    try:
        with db.session() as s:  # the ORM (sqlmodel) beside it writes one row itself
            s.add(AuditEntry(id="orm-1", server_name="acme", bot_id="bot", chat="c",
                             sender_hash="h", command="ping", result="ok",
                             created_at=datetime.fromisoformat(r["created_at"])))
        with db.session() as s:
            got = s.exec(select(AuditEntry).where(AuditEntry.id == r["id"])).one()
            assert (got.command, got.latency_ms, got.server_name) == ("ping", 3, "acme")
            assert got.created_at.replace(tzinfo=UTC) == datetime.fromisoformat(r["created_at"])
    finally:
        db.dispose()
        audit.close()
    texts = dict(stored(url, "SELECT id, created_at FROM audit_entry"))
    assert texts[r["id"]] == texts["orm-1"] == "2030-01-02 03:04:05.678901"


def test_a_replayed_row_is_stored_once(url: str) -> None:
    audit = AuditRows(url, "acme")
    rows = [row(command=f"c{i}") for i in range(3)]
    audit.insert_audit(rows[:2])
    audit.insert_audit(rows)  # a flush interrupted after the first two, replayed whole
    assert stored(url, "SELECT count(*) FROM audit_entry") == [(3,)]
    audit.close()


def test_a_row_of_another_tenant_is_refused_and_nothing_is_written(url: str) -> None:
    audit = AuditRows(url, "acme")
    with pytest.raises(CrossTenantWrite):
        audit.insert_audit([row("acme"), row("globex")])
    assert stored(url, "SELECT count(*) FROM audit_entry") == [(0,)]
    audit.close()


def test_a_database_that_cannot_be_opened_is_unavailable_until_it_can(tmp_path: Path) -> None:
    where = tmp_path / "not-yet"
    url = f"sqlite:///{where / 'bot.db'}"
    changes: list[bool] = []
    audit = AuditRows(url, "acme", Health(on_change=changes.append, retry_after_s=0.2))
    with pytest.raises(DatabaseUnavailable):
        audit.insert_audit([row()])
    assert changes == [False] and not audit.health.up
    with pytest.raises(DatabaseUnavailable, match="marked down"):  # fails fast meanwhile
        audit.insert_audit([row()])
    assert not audit.ping()
    where.mkdir()
    upgrade(url)
    time.sleep(0.25)
    assert audit.ping() and audit.health.up
    audit.insert_audit([row()])
    assert stored(url, "SELECT count(*) FROM audit_entry") == [(1,)]
    audit.close()


# A worker in a process of its own (the test process has SQLAlchemy loaded): one command
# through neonize's real dispatcher, its audit row written, then what the process has loaded.
ONE_COMMAND = r'''
import json, os, sys, time
from botworker.config import load_config
from botworker.worker import Worker
from neonize.client import NewClient
from tests.worker.conftest import dispatch, message_ev
from wabot.spec import WhatsAppBotSpec

cfg = load_config(dict(os.environ))
cfg.session_dir.mkdir(parents=True, exist_ok=True)
spec = WhatsAppBotSpec.model_validate({"serverName": cfg.server_name, "botId": cfg.bot_id})
worker = Worker(cfg, spec, client=NewClient(str(cfg.session_path)), sessions_enabled=False,
                terminal=False, http=False)
worker.start()
dispatch(worker.client, message_ev("!ping"))
deadline = time.monotonic() + 60
while time.monotonic() < deadline and (
        worker.metrics.value("wabot_commands_total", command="ping", result="ok") < 1
        or worker.audit.pending or not worker.datalayer.schema_ready):
    time.sleep(0.05)
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "sqlmodel", "psycopg",
                                                          "alembic"})
print(json.dumps({"pending": worker.audit.pending, "loaded": loaded}))
worker.stop(5.0)
'''


def run_one_command(tmp_path: Path, **env: str) -> dict[str, Any]:
    child_env = worker_process_env(tmp_path, **{"BOT_ID": "bot-1", "SERVER_NAME": "acme",
                                                 "HTTP_PORT": "0", **env})
    proc = subprocess.run([sys.executable, "-c", ONE_COMMAND], env=child_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_a_bot_that_answered_a_command_has_not_loaded_sqlalchemy(tmp_path: Path) -> None:
    got = run_one_command(tmp_path)
    assert got == {"pending": 0, "loaded": []}
    db = next(tmp_path.rglob("wabot.sqlite3"))
    assert stored(f"sqlite:///{db}", "SELECT command, result FROM audit_entry") == [
        ("ping", "ok")]
