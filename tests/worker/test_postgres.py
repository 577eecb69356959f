"""The data layer on a real PostgreSQL: tenant isolation (ORM filter and row-level security),
an audit row per command, and a database outage that loses nothing."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from botworker.context import DatabaseUnavailable
from botworker.data.db import Database
from botworker.data.migrate import run_in_child, upgrade
from devcluster.postgres import PostgresServer
from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, wait_for

pytestmark = pytest.mark.postgres
Make = Callable[..., Harness]


def app_database(server: Any, superuser_dsn: str) -> str:
    """A database owned by a fresh non-superuser role (as production should run), and that
    role's DSN. RLS does not apply to superusers, so the tests must not connect as one."""
    suffix = uuid.uuid4().hex[:8]
    role, password = f"wabot_app_{suffix}", f"pw-{suffix}"
    dbname = superuser_dsn.rsplit("/", 1)[1]
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO {role}')
        conn.execute(f"ALTER SCHEMA public OWNER TO {role}")
    return str(server.dsn(dbname, user=role, password=password))


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql).fetchall())


@pytest.fixture(scope="module")
def app_dsn(postgres: Any, pg_database: str) -> str:
    dsn = app_database(postgres, pg_database)
    ok, reason = run_in_child(dsn)  # as the worker does it: in a child process
    assert ok, reason
    return dsn


def audit_row(tenant: str, command: str = "ping") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "server_name": tenant, "bot_id": "bot", "chat": "c",
        "sender_hash": "h", "command": command, "result": "ok", "latency_ms": 1,
        "created_at": "2030-01-01T00:00:00+00:00",
    }


def test_migrations_are_idempotent_and_enable_forced_rls(app_dsn: str, pg_database: str) -> None:
    upgrade(app_dsn)  # a second run (every worker start) is a no-op
    got = rows(pg_database, "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                            "WHERE relname IN ('audit_entry', 'key_value') ORDER BY relname")
    assert got == [("audit_entry", True, True), ("key_value", True, True)]
    assert rows(pg_database, "SELECT version_num FROM alembic_version") == [("0002",)]


def test_concurrent_migrations_are_serialised_by_an_advisory_lock(postgres: Any) -> None:
    """After a rollout every bot's worker runs the migrations at the same moment: each waits
    for the advisory lock instead of racing the others' CREATE TABLEs."""
    import threading

    admin = postgres.create_database(f"t_race_{uuid.uuid4().hex[:6]}")
    dsn = app_database(postgres, admin)
    results: list[tuple[bool, str]] = []
    with psycopg.connect(admin, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(7214020501)")  # as if another worker migrates
        t = threading.Thread(target=lambda: results.append(run_in_child(dsn)))
        t.start()
        waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                   "AND NOT granted")
        wait_for(lambda: rows(admin, waiting)[0][0] == 1, timeout=60,
                 what="the migration to wait for the lock")
        assert rows(admin, "SELECT to_regclass('alembic_version')") == [(None,)]
        holder.execute("SELECT pg_advisory_unlock(7214020501)")
        t.join(60)
    assert results == [(True, "")]
    assert rows(dsn, "SELECT version_num FROM alembic_version") == [("0002",)]


def test_a_raw_query_in_one_tenants_session_never_sees_another_tenant(app_dsn: str) -> None:
    a, b = Database(app_dsn, "tenant-a"), Database(app_dsn, "tenant-b")
    try:
        a.insert_audit([audit_row("tenant-a", "a1"), audit_row("tenant-a", "a2")])
        b.insert_audit([audit_row("tenant-b", "b1")])
        with a.session() as s:
            raw = s.execute(text("SELECT server_name, command FROM audit_entry")).all()
            assert {r[0] for r in raw} == {"tenant-a"}
            assert {r[1] for r in raw} >= {"a1", "a2"} and "b1" not in {r[1] for r in raw}
            # Even a query that asks for the other tenant by name gets nothing.
            other = s.execute(
                text("SELECT count(*) FROM audit_entry WHERE server_name = 'tenant-b'")
            ).scalar()
            assert other == 0
        with b.session() as s:
            assert {r[0] for r in s.execute(text("SELECT server_name FROM audit_entry"))} == {
                "tenant-b"
            }
    finally:
        a.dispose()
        b.dispose()
    # A connection that never set a tenant sees no rows at all.
    assert rows(app_dsn, "SELECT count(*) FROM audit_entry") == [(0,)]
    assert a.bypasses_rls is None or a.bypasses_rls is False


def test_writing_another_tenants_rows_is_refused_twice(app_dsn: str) -> None:
    from botworker.data.db import CrossTenantWrite
    from botworker.data.models import KeyValue

    a = Database(app_dsn, "tenant-a")
    try:
        with pytest.raises(CrossTenantWrite), a.session() as s:  # the ORM wall
            s.add(KeyValue(server_name="tenant-b", scope="x", key="k", value="v"))
        with pytest.raises(Exception, match="row-level security"), a.session() as s:  # RLS
            s.execute(text("INSERT INTO key_value (server_name, scope, key, value, updated_at) "
                           "VALUES ('tenant-b', 'x', 'k', 'v', now())"))
    finally:
        a.dispose()


def test_orm_queries_are_scoped_and_rows_get_the_tenant(app_dsn: str) -> None:
    from sqlmodel import select

    from botworker.data.models import KeyValue
    from botworker.data.orm import kv_get, kv_set

    a, b = Database(app_dsn, "tenant-a"), Database(app_dsn, "tenant-b")
    try:
        with a.session() as s:
            kv_set(s, "notes", "greeting", "hello from a")
        with b.session() as s:
            assert kv_get(s, "notes", "greeting") is None
            kv_set(s, "notes", "greeting", "hello from b")
        with a.session() as s:
            assert kv_get(s, "notes", "greeting") == "hello from a"
            assert [r.server_name for r in s.exec(select(KeyValue)).all()] == ["tenant-a"]
    finally:
        a.dispose()
        b.dispose()


def test_a_superuser_dsn_is_flagged(pg_database: str) -> None:
    db = Database(pg_database, "tenant-a")
    try:
        assert db.ping()
        assert db.bypasses_rls is True
    finally:
        db.dispose()


def test_every_command_leaves_an_audit_row(
    make_worker: Make, app_dsn: str, pg_database: str, plugin_path: Path
) -> None:
    spec = WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-audit", "botId": "bot-a", "commands": {"plugins": ["boom"]}}
    )
    h = make_worker(spec, tenant="tenant-audit", env={"DATABASE_URL": app_dsn})
    h.ask("!ping", chat="15550004444")
    h.ask("!boom", chat="15550004444")
    h.ask("!nope", chat="15550004444")
    query = ("SELECT command, result, bot_id, chat, sender_hash FROM audit_entry "
             "WHERE server_name = 'tenant-audit' ORDER BY created_at")
    got = wait_for(lambda: (r := rows(pg_database, query)) and len(r) == 3 and r, timeout=15,
                   what="three audit rows")
    assert [(r[0], r[1]) for r in got] == [
        ("ping", "ok"), ("boom", "error"), ("nope", "unknown_command")
    ]
    assert {r[2] for r in got} == {"bot-a"}
    assert all("15550004444" not in r[4] for r in got)  # the sender is pseudonymised
    assert h.metric("wabot_db_up") == 1


# --- outage: a server of this test's own, stopped and started ---------------------------------


@pytest.fixture
def own_postgres() -> Iterator[tuple[PostgresServer, str]]:
    """A server this test may stop. Its directory is outside pytest's basetemp: a concurrent
    pytest session resets /tmp/pytest-of-<user> to 0700, locking the postgres user out."""
    root = Path(tempfile.mkdtemp(prefix="wabot-pg-outage-"))
    server = PostgresServer(root / "pg").init().start()
    try:
        server.wait_ready()
        dsn = app_database(server, server.create_database("outage"))
        yield server, dsn
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_outage_degrades_commands_keeps_whatsapp_and_loses_no_audit_row(
    make_worker: Make, own_postgres: tuple[PostgresServer, str], plugin_path: Path
) -> None:
    server, dsn = own_postgres
    spec = WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-o", "botId": "bot-o", "commands": {"plugins": ["notes"]}}
    )
    h = make_worker(spec, bot="bot-o", tenant="tenant-o", env={"DATABASE_URL": dsn})
    wait_for(h.worker.datalayer.ensure_schema, timeout=60, what="schema")
    assert h.ask("!note k before the outage") == "Saved note 'k'."
    wait_for(lambda: rows(dsn_admin(server), "SELECT count(*) FROM audit_entry")[0][0] == 1,
             timeout=15, what="first audit row")

    server.stop("fast")
    assert h.ask("!note k") == "The database is unavailable right now, try again later."
    assert h.ask("!ping").startswith("pong")  # commands without the database still work
    assert h.worker.ready() == (True, "")  # the WhatsApp side is untouched
    for _ in range(5):
        h.ask("!ping")
    spool = h.worker.cfg.spool_path
    wait_for(lambda: h.metric("wabot_audit_spool_rows") == 7, timeout=15, what="7 spooled rows")
    assert h.metric("wabot_db_up") == 0
    assert spool.exists() and len(spool.read_text().splitlines()) == 7
    assert h.metric("wabot_commands_total", command="note", result="db_unavailable") == 1

    server.start()
    server.wait_ready()
    wait_for(lambda: h.metric("wabot_audit_spool_rows") == 0, timeout=30, what="spool flushed")
    assert not spool.exists()
    assert rows(dsn_admin(server), "SELECT count(*) FROM audit_entry")[0][0] == 8
    assert h.metric("wabot_db_up") == 1
    assert h.ask("!note k") == "before the outage"


def test_spooled_rows_survive_a_worker_restart(
    make_worker: Make, own_postgres: tuple[PostgresServer, str], plugin_path: Path
) -> None:
    server, dsn = own_postgres
    env = {"DATABASE_URL": dsn}
    h = make_worker(bot="bot-r", tenant="tenant-r", env=env)
    wait_for(h.worker.datalayer.ensure_schema, timeout=60, what="schema")
    server.stop("fast")
    for _ in range(4):
        h.ask("!ping")
    assert h.worker.stop(10.0)
    spool = h.worker.cfg.spool_path
    assert len(spool.read_text().splitlines()) == 4  # on the bot's volume, not in memory

    server.start()
    server.wait_ready()
    h2 = make_worker(bot="bot-r", tenant="tenant-r", env=env)
    wait_for(lambda: not spool.exists(), timeout=30, what="the spool to be replayed")
    assert rows(dsn_admin(server), "SELECT count(*) FROM audit_entry "
                                   "WHERE server_name = 'tenant-r'")[0][0] == 4
    assert h2.metric("wabot_audit_spool_rows") == 0


def test_a_dead_database_at_start_does_not_stop_the_bot(make_worker: Make) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"postgresql://nobody:pw@127.0.0.1:{port}/nothing"
    h = make_worker(env={"DATABASE_URL": dead})
    assert h.ask("!ping").startswith("pong")
    wait_for(lambda: h.metric("wabot_audit_spool_rows") == 1, timeout=15, what="spooled row")
    wait_for(lambda: h.worker.datalayer.migration_failures >= 1, timeout=30,
             what="the failed migration")
    assert h.metric("wabot_db_up") == 0
    assert not h.worker.datalayer.schema_ready
    with pytest.raises(DatabaseUnavailable), h.worker.datalayer.session():
        pass


def dsn_admin(server: PostgresServer) -> str:
    return server.dsn("outage")
