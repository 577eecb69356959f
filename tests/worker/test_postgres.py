"""The data layer on a real PostgreSQL: migrations as the owner role, tenant roles made by
`provision`, tenant isolation (ORM filter and row-level security bound to the login role), a
worker that refuses a role of another tenant, an audit row per command, and a database outage
that loses nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy import text

from botworker.core.context import DatabaseUnavailable
from botworker.data.auditrows import AuditRows
from botworker.data.db import Database
from botworker.data.health import Health
from botworker.data.migrate import run_in_child, upgrade
from botworker.data.rolecheck import check_in_child
from botworker.data.tenancy import SCHEMA_HEAD, dsn_for_role, provision
from devcluster.postgres import PostgresServer
from tests.reliability.pg import tenant_role
from wabot.spec import WhatsAppBotSpec

from .conftest import Harness, wait_for, worker_process_env

pytestmark = pytest.mark.postgres
Make = Callable[..., Harness]


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql).fetchall())


@dataclass(frozen=True)
class Pg:
    owner: str  # the owner (migrator) role: migrations and provisioning, never a worker
    admin: str  # a superuser, to look at every row

    def tenant(self, tenant: str) -> str:
        """The DSN of a fresh login role bound to `tenant` (one role per caller, as one per
        bot would be)."""
        return tenant_role(self.owner, tenant)


def migrated(server: PostgresServer, dbname: str) -> Pg:
    owner = server.create_owned_database(dbname)
    ok, reason = run_in_child(owner)  # as the migrate step does it: in a child process
    assert ok, reason
    return Pg(owner, server.dsn(dbname))


@pytest.fixture(scope="module")
def pg(postgres: PostgresServer, request: pytest.FixtureRequest) -> Pg:
    return migrated(postgres, f"t_pg_{request.module.__name__[-12:]}_{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def app_dsn(pg: Pg) -> dict[str, str]:
    """Tenant -> DSN of a role bound to it."""
    return {t: pg.tenant(t) for t in ("tenant-a", "tenant-b")}


def audit_row(tenant: str, command: str = "ping") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "server_name": tenant, "bot_id": "bot", "chat": "c",
        "sender_hash": "h", "command": command, "result": "ok", "latency_ms": 1,
        "created_at": "2030-01-01T00:00:00+00:00",
    }


def test_migrations_are_idempotent_and_enable_forced_rls(pg: Pg) -> None:
    upgrade(pg.owner)  # a second run (every rollout's migrate step) is a no-op
    got = rows(pg.admin, "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                         "WHERE relname IN ('audit_entry', 'key_value', 'wabot_tenant_role') "
                         "ORDER BY relname")
    assert got == [("audit_entry", True, True), ("key_value", True, True),
                   ("wabot_tenant_role", True, False)]
    assert rows(pg.admin, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    # Nothing through PUBLIC: tenant roles get their privileges from `provision` only.
    assert rows(pg.admin, "SELECT count(*) FROM information_schema.role_table_grants "
                          "WHERE grantee = 'PUBLIC' AND table_schema = 'public'") == [(0,)]


def test_concurrent_migrations_are_serialised_by_an_advisory_lock(postgres: Any) -> None:
    """Two migrate steps at once (two monolith replicas, a Helm hook and a hand-run one): each
    waits for the advisory lock instead of racing the other's CREATE TABLEs."""
    import threading

    name = f"t_race_{uuid.uuid4().hex[:6]}"
    dsn = postgres.create_owned_database(name)
    admin = postgres.dsn(name)
    results: list[tuple[bool, str]] = []
    with psycopg.connect(admin, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(7214020501)")  # as if another step migrates
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
    assert rows(dsn, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]


def test_a_raw_query_in_one_tenants_session_never_sees_another_tenant(
        app_dsn: dict[str, str], pg: Pg) -> None:
    a, b = Database(app_dsn["tenant-a"], "tenant-a"), Database(app_dsn["tenant-b"], "tenant-b")
    try:
        for tenant, commands in (("tenant-a", ("a1", "a2")), ("tenant-b", ("b1",))):
            audit = AuditRows(app_dsn[tenant], tenant)  # as the worker writes them
            audit.insert_audit([audit_row(tenant, c) for c in commands])
            audit.close()
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
    # A role bound to no tenant (here the owner: FORCE applies to it too) sees no rows at all.
    assert rows(pg.owner, "SELECT count(*) FROM audit_entry") == [(0,)]


def test_writing_another_tenants_rows_is_refused_twice(app_dsn: dict[str, str]) -> None:
    from botworker.core.context import CrossTenantWrite
    from botworker.data.models import KeyValue

    a = Database(app_dsn["tenant-a"], "tenant-a")
    try:
        with pytest.raises(CrossTenantWrite), a.session() as s:  # the ORM wall
            s.add(KeyValue(server_name="tenant-b", scope="x", key="k", value="v"))
        with pytest.raises(Exception, match="row-level security"), a.session() as s:  # RLS
            s.execute(text("INSERT INTO key_value (server_name, scope, key, value, updated_at) "
                           "VALUES ('tenant-b', 'x', 'k', 'v', now())"))
    finally:
        a.dispose()


def test_orm_queries_are_scoped_and_rows_get_the_tenant(app_dsn: dict[str, str]) -> None:
    from sqlmodel import select

    from botworker.data.kv import kv_get, kv_set
    from botworker.data.models import KeyValue

    a, b = Database(app_dsn["tenant-a"], "tenant-a"), Database(app_dsn["tenant-b"], "tenant-b")
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


def test_the_start_up_check_refuses_every_role_but_the_tenants_own(
        pg: Pg, app_dsn: dict[str, str], postgres: PostgresServer) -> None:
    """What a worker's DataLayer asks before it uses the database at all (in a child process,
    as the worker does)."""
    unbound = f"t_unbound_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg.admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {unbound} LOGIN PASSWORD 'pw-unbound'")
    old = migrated_to(postgres, "0002")
    cases = {
        "own tenant": (app_dsn["tenant-a"], "tenant-a"),
        "another tenant's role": (app_dsn["tenant-b"], "tenant-a"),
        "the owner role": (pg.owner, "tenant-a"),
        "a superuser": (pg.admin, "tenant-a"),
        "a role nobody provisioned": (postgres.dsn(pg.admin.rsplit("/", 1)[1], unbound,
                                                   "pw-unbound"), "tenant-a"),
        "a schema at 0002": (postgres.dsn(old.rsplit("/", 1)[1], unbound, "pw-unbound"),
                             "tenant-a"),
    }
    got = {}
    for label, (dsn, tenant) in cases.items():
        b, error = check_in_child(dsn, tenant)
        assert b is not None, f"{label}: {error}"
        got[label] = (b.problem, b.permanent)
    assert got["own tenant"] == (None, False)
    problem, permanent = got["another tenant's role"]
    assert permanent and problem is not None
    assert "bound to tenant tenant-b" in problem and "serverName is tenant-a" in problem
    assert "owns" in str(got["the owner role"][0]) and got["the owner role"][1]
    assert "bypasses row-level security" in str(got["a superuser"][0])
    assert "bound to no tenant" in str(got["a role nobody provisioned"][0])
    assert f"provision --tenant tenant-a --role {unbound}" in str(
        got["a role nobody provisioned"][0])
    assert "not migrated" in str(got["a schema at 0002"][0])
    assert got["a schema at 0002"][1] is False  # waits for the migrate step, then goes on
    assert all("pw-" not in str(p) for p, _ in got.values())


def migrated_to(postgres: PostgresServer, revision: str) -> str:
    """An owned database migrated only to `revision` (an old schema); the owner's DSN."""
    owner = postgres.create_owned_database(f"t_old_{uuid.uuid4().hex[:6]}")
    upgrade(owner, revision)
    return owner


def test_provision_cli_prints_no_secret_writes_a_private_dsn_and_is_idempotent(
        pg: Pg, tmp_path: Path) -> None:
    env = {**os.environ, "WABOT_MIGRATE_URL": pg.owner}
    env.pop("DATABASE_URL", None)
    password = urlsplit(pg.owner).password
    assert password

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "botworker.data.migrate", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    role = f"t_cli_{uuid.uuid4().hex[:6]}"
    out = tmp_path / "acme.dsn"
    first = cli("provision", "--tenant", "acme", "--role", role, "--dsn-file", str(out))
    assert first.returncode == 0, first.stderr
    dsn = out.read_text().strip()
    tenant_password = urlsplit(dsn).password
    assert tenant_password and out.stat().st_mode & 0o777 == 0o600
    assert f"role {role} -> tenant acme (created, password set" in first.stdout
    for text_ in (first.stdout, first.stderr):
        assert tenant_password not in text_ and password not in text_
    again = cli("provision", "--tenant", "acme", "--role", role)  # idempotent, keeps password
    assert again.returncode == 0 and "existing role" in again.stdout
    db = Database(dsn, "acme")
    try:
        assert db.check_binding().problem is None
    finally:
        db.dispose()
    other = cli("provision", "--tenant", "globex", "--role", role)
    assert other.returncode == 1 and "bound to tenant acme" in other.stderr
    owner_role = urlsplit(pg.owner).username
    assert cli("provision", "--tenant", "acme", "--role", str(owner_role)).returncode == 1
    gone = cli("revoke", "--role", role, "--drop")
    assert gone.returncode == 0 and "revoked from tenant acme; role dropped" in gone.stdout
    assert rows(pg.admin, f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == [(0,)]


def test_setup_migrates_and_provisions_each_tenant_from_the_environment(
        postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`wabot db setup`, the Docker Compose tier's one-shot service."""
    from botworker.data.migrate import main

    owner = postgres.create_owned_database(f"t_setup_{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("WABOT_MIGRATE_URL", owner)
    monkeypatch.setenv("WABOT_DB_PASSWORD_SETUP_A", "pw-setup-a")
    assert main(["setup", "--tenant", "setup-a", "--tenant", "setup-b"]) == 2  # no password
    monkeypatch.setenv("WABOT_DB_PASSWORD_SETUP_B", "pw-setup-b")
    assert main(["setup", "--tenant", "setup-a", "--tenant", "setup-b"]) == 0
    out = capsys.readouterr()
    assert "pw-setup" not in out.out + out.err
    for tenant in ("setup-a", "setup-b"):
        db = Database(dsn_for_role(owner, f"wabot_{tenant}", f"pw-{tenant}"), tenant)
        try:
            assert db.check_binding().problem is None
        finally:
            db.dispose()


def test_a_worker_with_another_tenants_role_writes_nothing_and_says_why(
        make_worker: Make, pg: Pg, app_dsn: dict[str, str], plugin_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bot of tenant-x given tenant-a's DSN: the database is not used at all (RLS would
    refuse the rows anyway), the audit rows wait in the spool, WhatsApp is untouched."""
    before = rows(pg.admin, "SELECT count(*) FROM audit_entry")[0][0]
    spec = WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-x", "botId": "bot-x", "commands": {"plugins": ["notes"]}})
    h = make_worker(spec, bot="bot-x", tenant="tenant-x",
                    env={"DATABASE_URL": app_dsn["tenant-a"]})
    wait_for(lambda: h.worker.datalayer.problem, timeout=30, what="the refused role")
    problem = str(h.worker.datalayer.problem)
    assert "bound to tenant tenant-a" in problem and "serverName is tenant-x" in problem
    assert h.ask("!ping").startswith("pong")
    assert h.ask("!note k v") == "The database is unavailable right now, try again later."
    wait_for(lambda: h.metric("wabot_audit_spool_rows") == 2, timeout=15, what="spooled rows")
    assert h.metric("wabot_db_up") == 0
    assert rows(pg.admin, "SELECT count(*) FROM audit_entry")[0][0] == before
    assert rows(pg.admin, "SELECT count(*) FROM key_value WHERE server_name = 'tenant-x'") \
        == [(0,)]
    password = str(urlsplit(app_dsn["tenant-a"]).password)
    assert password not in caplog.text


def test_a_role_provisioned_later_is_picked_up_without_a_restart(
        make_worker: Make, pg: Pg, postgres: PostgresServer) -> None:
    role, password = f"t_late_{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    dsn = dsn_for_role(pg.owner, role, password)
    h = make_worker(bot="bot-l", tenant="tenant-late", env={"DATABASE_URL": dsn})
    wait_for(lambda: h.worker.datalayer.problem, timeout=30, what="the unbound role")
    assert "bound to no tenant" in str(h.worker.datalayer.problem)
    h.ask("!ping")
    wait_for(lambda: h.metric("wabot_audit_spool_rows") == 1, timeout=15, what="spooled row")
    provision(pg.owner, "tenant-late", role)  # the operator of the system fixes it
    wait_for(lambda: h.worker.datalayer.schema_ready or h.worker.datalayer.ensure_schema(),
             timeout=60, what="the role to be accepted")
    assert h.worker.datalayer.problem is None
    wait_for(lambda: h.metric("wabot_audit_spool_rows") == 0, timeout=30, what="spool flushed")
    assert rows(pg.admin, "SELECT count(*) FROM audit_entry WHERE server_name = 'tenant-late'") \
        == [(1,)]


def test_every_command_leaves_an_audit_row(
    make_worker: Make, pg: Pg, plugin_path: Path
) -> None:
    spec = WhatsAppBotSpec.model_validate(
        {"serverName": "tenant-audit", "botId": "bot-a", "commands": {"plugins": ["boom"]}}
    )
    h = make_worker(spec, tenant="tenant-audit", env={"DATABASE_URL": pg.tenant("tenant-audit")})
    h.ask("!ping", chat="15550004444")
    h.ask("!boom", chat="15550004444")
    h.ask("!nope", chat="15550004444")
    query = ("SELECT command, result, bot_id, chat, sender_hash FROM audit_entry "
             "WHERE server_name = 'tenant-audit' ORDER BY created_at")
    got = wait_for(lambda: (r := rows(pg.admin, query)) and len(r) == 3 and r, timeout=15,
                   what="three audit rows")
    assert [(r[0], r[1]) for r in got] == [
        ("ping", "ok"), ("boom", "error"), ("nope", "unknown_command")
    ]
    assert {r[2] for r in got} == {"bot-a"}
    assert all("15550004444" not in r[4] for r in got)  # the sender is pseudonymised
    assert h.metric("wabot_db_up") == 1


# --- outage: a server of this test's own, stopped and started ---------------------------------


@pytest.fixture
def own_postgres() -> Iterator[tuple[PostgresServer, Pg]]:
    """A server this test may stop. Its directory is outside pytest's basetemp: a concurrent
    pytest session resets /tmp/pytest-of-<user> to 0700, locking the postgres user out."""
    root = Path(tempfile.mkdtemp(prefix="wabot-pg-outage-"))
    server = PostgresServer(root / "pg").init().start()
    try:
        server.wait_ready()
        yield server, migrated(server, "outage")
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_outage_degrades_commands_keeps_whatsapp_and_loses_no_audit_row(
    make_worker: Make, own_postgres: tuple[PostgresServer, Pg], plugin_path: Path
) -> None:
    server, pg = own_postgres
    dsn = pg.tenant("tenant-o")
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


def test_audit_rows_go_on_over_a_new_connection_after_a_server_restart(
        own_postgres: tuple[PostgresServer, Pg]) -> None:
    """The kept connection dies with the server; the first row after the restart goes over a
    new one, without the database ever being reported down. While the server is down, rows
    are refused as unavailable (the writer spools them) and nothing is stored twice."""
    server, pg = own_postgres
    changes: list[bool] = []
    audit = AuditRows(pg.tenant("tenant-k"), "tenant-k", Health(on_change=changes.append))
    try:
        audit.insert_audit([audit_row("tenant-k", "before")])
        server.stop("fast")
        server.start()
        server.wait_ready()
        audit.insert_audit([audit_row("tenant-k", "after")])
        assert changes == [True, True]  # never marked down
        server.stop("fast")
        late = audit_row("tenant-k", "late")
        with pytest.raises(DatabaseUnavailable):
            audit.insert_audit([late])
        assert changes[-1] is False
        server.start()
        server.wait_ready()
        time.sleep(2.1)  # past the fail-fast window
        audit.insert_audit([late])
        audit.insert_audit([late])  # a spool replayed twice
    finally:
        audit.close()
    assert sorted(r[0] for r in rows(dsn_admin(server), "SELECT command FROM audit_entry")) == [
        "after", "before", "late"]


def test_spooled_rows_survive_a_worker_restart(
    make_worker: Make, own_postgres: tuple[PostgresServer, Pg], plugin_path: Path
) -> None:
    server, pg = own_postgres
    env = {"DATABASE_URL": pg.tenant("tenant-r")}
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


# --- the worker as a process: what the start-up check leaves in its memory ---------------------


def _worker_process(tmp_path: Path, dsn: str, tenant: str) -> tuple[subprocess.Popen[str], Path]:
    spec = tmp_path / "bot.yaml"
    spec.write_text(f"serverName: {tenant}\nbotId: bot-p\n")
    log = tmp_path / "worker.log"
    env = worker_process_env(tmp_path, BOT_ID="bot-p", SERVER_NAME=tenant, HTTP_PORT="0",
                             HTTP_HOST="127.0.0.1", DATABASE_URL=dsn,
                             WABOT_SPEC_SOURCE=f"file:{spec}")
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "botworker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    return proc, log


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _mapped(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_an_idle_postgresql_worker_keeps_no_database_driver_in_memory(
        tmp_path: Path, pg: Pg) -> None:
    """The role check runs in a child: once it has passed, the worker itself has loaded
    neither SQLAlchemy nor psycopg (their ~27 MB come with the first row it writes)."""
    proc, log = _worker_process(tmp_path, pg.tenant("tenant-proc"), "tenant-proc")
    try:
        wait_for(lambda: "database schema is up to date" in log.read_text()
                 or proc.poll() is not None, timeout=60, what="the role check")
        assert proc.poll() is None, log.read_text()[-2000:]
        assert '"msg": "database role is bound to this tenant"' in log.read_text()
        maps = _mapped(proc.pid)
        assert "sqlalchemy" not in maps and "psycopg" not in maps and "libpq" not in maps
    finally:
        _stop(proc)


def test_a_wrong_password_is_one_clear_retried_line_without_the_password(
        tmp_path: Path, pg: Pg) -> None:
    dsn = pg.tenant("tenant-pw")
    parts = urlsplit(dsn)
    wrong = "pw-WRONG-4e1d"
    bad = dsn.replace(f":{parts.password}@", f":{wrong}@")
    proc, log = _worker_process(tmp_path, bad, "tenant-pw")
    try:
        wait_for(lambda: "database not ready" in log.read_text() or proc.poll() is not None,
                 timeout=60, what="the failed role check")
        assert proc.poll() is None, log.read_text()[-2000:]
        line = next(ln for ln in log.read_text().splitlines() if "database not ready" in ln)
        assert "password authentication failed" in line and "retry_in_s" in line
        assert wrong not in log.read_text() and str(parts.password) not in log.read_text()
        assert "sqlalchemy" not in _mapped(proc.pid)
    finally:
        _stop(proc)


def test_a_bot_that_answered_a_command_has_loaded_the_driver_but_not_sqlalchemy(
        tmp_path: Path, pg: Pg) -> None:
    from .test_audit_rows import run_one_command

    got = run_one_command(tmp_path, SERVER_NAME="tenant-one",
                          DATABASE_URL=pg.tenant("tenant-one"))
    assert got == {"pending": 0, "loaded": ["psycopg"]}
    assert rows(pg.admin, "SELECT command, result FROM audit_entry "
                          "WHERE server_name = 'tenant-one'") == [("ping", "ok")]
