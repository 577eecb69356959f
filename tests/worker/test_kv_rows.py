"""The key-value store (`!note`, botworker/data/kv.py) through the driver alone, and a session
that a plugin then uses as a sqlmodel Session (botworker/data/session.py).

A bot whose commands only use the key-value store never loads SQLAlchemy's ORM or sqlmodel
(~20 MiB for the rest of its life); a plugin that uses the ORM still gets a real sqlmodel
Session, in the same transaction as what the block did before. The PostgreSQL side (row-level
security on the driver path too) is in tests/worker/test_postgres.py, which runs `kv_set` and
`kv_get` on fresh sessions, and in tests/reliability/test_isolation_rls.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from botworker.core.context import DatabaseUnavailable
from botworker.data.db import Database
from botworker.data.kv import kv_get, kv_set
from botworker.data.migrate import upgrade
from tests.worker.conftest import worker_process_env


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'wabot.sqlite3'}"
    upgrade(u)
    return u


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    d = Database(url, "acme")
    yield d
    d.dispose()


def stored(url: str, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return list(conn.execute(sql).fetchall())


def test_driver_rows_are_the_orms_rows(db: Database, url: str) -> None:
    with db.session() as s:
        kv_set(s, "notes", "k", "first")
        kv_set(s, "notes", "k", "second")  # replaced, not a second row
        assert kv_get(s, "notes", "k") == "second"
        assert s.uses_driver
    with db.session() as s:  # the ORM reads what the driver wrote, and the other way round
        from sqlmodel import select

        from botworker.data.models import KeyValue

        row = s.exec(select(KeyValue)).one()
        assert (row.server_name, row.scope, row.key, row.value) == ("acme", "notes", "k",
                                                                    "second")
        assert abs(row.updated_at.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 60
        row.value = "third"
        s.add(row)
    with db.session() as s:
        assert kv_get(s, "notes", "k") == "third"
    assert stored(url, "SELECT count(*) FROM key_value") == [(1,)]


def test_another_tenants_rows_are_invisible_on_the_driver_path(url: str) -> None:
    a, b = Database(url, "tenant-a"), Database(url, "tenant-b")
    try:
        with a.session() as s:
            kv_set(s, "notes", "k", "of a")
        with b.session() as s:
            assert kv_get(s, "notes", "k") is None
            kv_set(s, "notes", "k", "of b")
        with a.session() as s:
            assert kv_get(s, "notes", "k") == "of a"
    finally:
        a.dispose()
        b.dispose()
    assert sorted(stored(url, "SELECT server_name, value FROM key_value")) == [
        ("tenant-a", "of a"), ("tenant-b", "of b")]


def test_a_failed_block_writes_nothing_on_either_path(db: Database, url: str) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        kv_set(s, "notes", "driver", "v")
        raise RuntimeError("the plugin failed")
    with pytest.raises(RuntimeError), db.session() as s:
        kv_set(s, "notes", "driver-then-orm", "v")
        s.info  # noqa: B018 (the plugin touches the ORM: the session becomes a Session)
        raise RuntimeError("the plugin failed")
    assert stored(url, "SELECT count(*) FROM key_value") == [(0,)]


def test_what_the_driver_did_continues_in_the_orm_session(db: Database, url: str) -> None:
    from sqlmodel import select

    from botworker.data.models import KeyValue

    with db.session() as s:
        kv_set(s, "notes", "a", "1")
        assert kv_get(s, "notes", "a") == "1"
        # A plugin using the ORM in the same block sees the write, in the same transaction.
        assert [r.key for r in s.exec(select(KeyValue)).all()] == ["a"]
        assert not s.uses_driver
        kv_set(s, "notes", "b", "2")  # now through the ORM
    assert sorted(stored(url, "SELECT key, value FROM key_value")) == [("a", "1"), ("b", "2")]


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'missing' / 'wabot.sqlite3'}", "acme")
    try:
        with pytest.raises(DatabaseUnavailable), db.session() as s:
            kv_get(s, "notes", "k")
        assert not db.health.up
        with pytest.raises(DatabaseUnavailable, match="marked down"), db.session():
            pass  # fails fast meanwhile
    finally:
        db.dispose()


# A worker in a process of its own (the test process has SQLAlchemy loaded): `!note` saved and
# read through neonize's real dispatcher, then what the process has loaded.
NOTE_COMMANDS = r'''
import json, os, sys, time
from botworker.config import load_config
from botworker.worker import Worker
from tests.worker.conftest import dispatch, message_ev
from neonize.client import NewClient
from wabot.spec import WhatsAppBotSpec

cfg = load_config(dict(os.environ))
cfg.session_dir.mkdir(parents=True, exist_ok=True)
spec = WhatsAppBotSpec.model_validate({"serverName": cfg.server_name, "botId": cfg.bot_id,
                                       "commands": {"plugins": ["notes"]}})
worker = Worker(cfg, spec, client=NewClient(str(cfg.session_path)), sessions_enabled=False,
                terminal=False, http=False)
worker.start()
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not worker.datalayer.schema_ready:  # migrated in a child
    time.sleep(0.05)
for n, text in enumerate(("!note greeting hello there", "!note greeting"), start=1):
    dispatch(worker.client, message_ev(text))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and worker.metrics.value(
            "wabot_commands_total", command="note", result="ok") < n:
        time.sleep(0.05)
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "sqlmodel", "alembic"})
print(json.dumps({"ok": worker.metrics.value("wabot_commands_total", command="note",
                                             result="ok"), "loaded": loaded}))
worker.stop(5.0)
'''


def test_a_bot_that_saved_and_read_a_note_has_not_loaded_the_orm(tmp_path: Path) -> None:
    env = worker_process_env(tmp_path, BOT_ID="bot-1", SERVER_NAME="acme", HTTP_PORT="0")
    proc = subprocess.run([sys.executable, "-c", NOTE_COMMANDS], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"ok": 2, "loaded": []}
    db = next(tmp_path.rglob("wabot.sqlite3"))
    assert stored(f"sqlite:///{db}", "SELECT server_name, scope, key, value FROM key_value") == [
        ("acme", "notes", "greeting", "hello there")]
