"""5. Isolation matrix, database side: row-level security against hand-written SQL.

Three tenants share one PostgreSQL database, owned and migrated by a non-superuser owner role
(as production runs it: the migrate step). Each tenant's workers connect as a login role of
its own, made by the real `provision` code, which binds the role to the tenant; the policies
take the tenant from that binding (`current_user`), never from anything the session says.
Rows are written through each tenant's `Database`. Then, inside each tenant's own session
(`Database.session()`), a battery of hand-written statements — selects of every shape, joins,
unions, subqueries, a leaky-function side channel, the planner statistics, updates, deletes
and inserts aimed at the other tenants — must see and change none of their rows.

The two escapes that were known gaps of the earlier design (tenant = the session setting
`app.server_name`; the workers' role owning the tables) are tried for real: switching the
setting (SET, set_config, for the transaction and for the session), becoming another role
(SET ROLE to the owner, to another tenant's role, to a superuser; SET SESSION AUTHORIZATION;
GRANT; ALTER ROLE ... BYPASSRLS), rewriting the binding, and switching row-level security off
or around (ALTER TABLE ... DISABLE / NO FORCE ROW LEVEL SECURITY, DROP / ALTER / CREATE
POLICY, TRUNCATE, a SECURITY DEFINER function or a view in `public`, triggers, renames, owner
changes). Each must be refused by PostgreSQL, or — where PostgreSQL allows it (a SECURITY
DEFINER function or a view in the session's own temporary schema runs as the tenant itself) —
reach no other tenant's row; the tables' security settings and policies must be unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy import text

from botworker.data.auditrows import AuditRows
from botworker.data.db import Database
from botworker.data.tenancy import grant_statements
from devcluster.postgres import SUPERUSER, PostgresServer
from tests.reliability import figures
from tests.reliability.pg import migrated_database, rows, tenant_role

SECTION = "isolation"
pytestmark = pytest.mark.postgres
TENANTS = ("t-alpha", "t-beta", "t-gamma")
ROWS_PER_TENANT = 40

# (label, SQL, what it returns): "names" = rows whose first column is a server_name,
# "count" = one count that must equal the tenant's own, "text" = one text that must not name
# another tenant, "rowcount" = a write that must touch nothing.
READS: list[tuple[str, str, str]] = [
    ("select all", "SELECT server_name FROM audit_entry", "names"),
    ("select all kv", "SELECT server_name FROM key_value", "names"),
    ("where other", "SELECT server_name FROM audit_entry WHERE server_name = :other", "names"),
    ("where not me", "SELECT server_name FROM key_value WHERE server_name <> :me", "names"),
    ("or true", "SELECT server_name FROM audit_entry WHERE true OR server_name = :other",
     "names"),
    ("cross join", "SELECT k.server_name FROM audit_entry a CROSS JOIN key_value k", "names"),
    ("subquery", "SELECT server_name FROM (SELECT * FROM audit_entry) s", "names"),
    ("cte", "WITH x AS (SELECT * FROM key_value) SELECT server_name FROM x", "names"),
    ("union", "SELECT server_name FROM audit_entry UNION ALL SELECT server_name FROM key_value",
     "names"),
    ("table", "TABLE key_value", "names"),
    ("only", "SELECT server_name FROM ONLY key_value", "names"),
    ("for update", "SELECT server_name FROM key_value FOR UPDATE", "names"),
    ("lateral", "SELECT k.server_name FROM audit_entry a, LATERAL (SELECT server_name FROM "
     "key_value WHERE key_value.server_name <> a.server_name) k", "names"),
    ("count audit", "SELECT count(*) FROM audit_entry", "count"),
    ("count kv", "SELECT count(*) FROM key_value", "count"),
    ("aggregate", "SELECT string_agg(DISTINCT server_name, ',') FROM audit_entry", "text"),
    ("json", "SELECT coalesce(jsonb_agg(t)::text, '') FROM key_value t", "text"),
    ("planner statistics", "SELECT coalesce(string_agg(most_common_vals::text, ','), '') "
     "FROM pg_stats WHERE tablename IN ('audit_entry', 'key_value')", "text"),
]
# A write may also be refused outright (audit rows are append-only for tenant roles: no UPDATE
# or DELETE privilege on audit_entry); either way it must touch no other tenant's row.
WRITES: list[tuple[str, str]] = [
    ("update other", "UPDATE audit_entry SET result = 'pwned' WHERE server_name = :other"),
    ("update all", "UPDATE key_value SET value = 'pwned'"),
    ("delete other", "DELETE FROM key_value WHERE server_name = :other"),
    ("delete all", "DELETE FROM audit_entry WHERE server_name <> :me"),
]
REFUSED: list[tuple[str, str]] = [
    ("insert as other", "INSERT INTO key_value (server_name, scope, key, value, updated_at) "
     "VALUES (:other, 'x', :key, 'v', now())"),
    ("move own row to other", "UPDATE key_value SET server_name = :other "
     "WHERE server_name = :me"),
    ("set role", f"SET ROLE {SUPERUSER}"),
]


@dataclass(frozen=True)
class SharedDb:
    tenants: dict[str, str]  # tenant -> its role's DSN
    admin: str  # a superuser's DSN (sees everything: RLS does not apply to superusers)
    owner: str  # the owner (migrator) role's DSN
    unbound: str  # a login role with the tenant privileges but bound to no tenant

    def role(self, tenant: str) -> str:
        return str(urlsplit(self.tenants[tenant]).username)


@pytest.fixture(scope="module")
def shared_db(postgres: PostgresServer) -> Iterator[SharedDb]:
    """A database holding rows of three tenants, each written through its own role."""
    name = f"rls_{uuid.uuid4().hex[:8]}"
    owner = migrated_database(postgres, name)
    admin = postgres.dsn(name)
    dsns = {tenant: tenant_role(owner, tenant) for tenant in TENANTS}
    unbound_role = f"rls_unbound_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {unbound_role} LOGIN PASSWORD 'pw-unbound'")
        for stmt in grant_statements(unbound_role):
            conn.execute(stmt)
    for tenant, dsn in dsns.items():
        db = Database(dsn, tenant)
        try:
            assert db.check_binding().problem is None
            audit = AuditRows(dsn, tenant)  # as the worker writes them
            audit.insert_audit([{
                "id": str(uuid.uuid4()), "server_name": tenant, "bot_id": "b", "chat": "c",
                "sender_hash": "h", "command": f"{tenant}-cmd", "result": "ok",
                "latency_ms": 1, "created_at": "2030-01-01T00:00:00+00:00"}
                for _ in range(ROWS_PER_TENANT)])
            audit.close()
            from botworker.data.kv import kv_set

            with db.session() as s:
                for i in range(ROWS_PER_TENANT):
                    kv_set(s, "notes", f"k{i}", f"secret of {tenant} #{i}")
        finally:
            db.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ANALYZE")  # planner statistics exist, for the side-channel check
    yield SharedDb(dsns, admin, owner, postgres.dsn(name, unbound_role, "pw-unbound"))


def snapshot(admin: str) -> list[tuple[Any, ...]]:
    return rows(admin, "SELECT server_name, scope, key, value FROM key_value ORDER BY 1, 2, 3") \
        + rows(admin, "SELECT server_name, id, result FROM audit_entry ORDER BY 1, 2")


def others(tenant: str) -> list[str]:
    return [t for t in TENANTS if t != tenant]


def refused(e: Exception) -> bool:
    """PostgreSQL's own refusals: a privilege missing, not the owner, a policy's check."""
    msg = str(e)
    return any(m in msg for m in ("permission denied", "must be owner", "row-level security",
                                  "InsufficientPrivilege"))


def test_hand_written_sql_in_a_tenant_session_reaches_no_other_tenant(
        shared_db: SharedDb) -> None:
    figures.section(SECTION, "5. Isolation matrix")
    admin = shared_db.admin
    before = snapshot(admin)
    leaks: list[str] = []
    statements = 0
    refused_ok = 0
    notices: list[str] = []
    for tenant in TENANTS:
        db = Database(shared_db.tenants[tenant], tenant)
        try:
            for other in others(tenant):
                params = {"me": tenant, "other": other, "key": uuid.uuid4().hex}
                for label, sql, kind in READS:
                    with db.session() as s:
                        result = s.execute(text(sql), params).all()
                    statements += 1
                    if kind == "names":
                        seen = {r[0] if isinstance(r[0], str) else r.server_name for r in result}
                        if seen - {tenant}:
                            leaks.append(f"{tenant}: {label} saw {sorted(seen - {tenant})}")
                    elif kind == "count":
                        if result[0][0] != ROWS_PER_TENANT:
                            leaks.append(f"{tenant}: {label} counted {result[0][0]}")
                    elif any(o in str(result[0][0] or "") for o in others(tenant)):
                        leaks.append(f"{tenant}: {label} named another tenant")
                for label, sql in WRITES:
                    try:
                        with db.session() as s:
                            count = s.execute(text(sql), params).rowcount
                            s.rollback()  # touch nothing of our own either
                    except Exception as e:
                        if not refused(e):
                            raise
                        count = 0  # refused by a missing privilege: nothing touched
                    statements += 1
                    expected_own = ROWS_PER_TENANT if label in ("update all",) else 0
                    if count not in (0, expected_own):
                        leaks.append(f"{tenant}: {label} changed {count} rows")
                for label, sql in REFUSED:
                    statements += 1
                    try:
                        with db.session() as s:
                            s.execute(text(sql), params)
                    except Exception as e:
                        if refused(e):
                            refused_ok += 1
                        else:
                            leaks.append(f"{tenant}: {label} failed oddly: {str(e)[:120]}")
                    else:
                        leaks.append(f"{tenant}: {label} was accepted")
                # A leaky function in the WHERE clause: row-level security filters first, so
                # only the tenant's own rows ever reach it.
                with db.session() as s:
                    conn = s.connection().connection.driver_connection
                    assert isinstance(conn, psycopg.Connection)
                    got: list[str] = []
                    conn.add_notice_handler(lambda d, got=got: got.append(d.message_primary))
                    s.execute(text(
                        "CREATE OR REPLACE FUNCTION pg_temp.peek(v text) RETURNS boolean AS $$ "
                        "BEGIN RAISE NOTICE '%', v; RETURN true; END $$ LANGUAGE plpgsql "
                        "COST 0.0000001"))
                    s.execute(text("SELECT count(*) FROM key_value WHERE pg_temp.peek(value)"))
                    s.rollback()
                statements += 1
                notices += got
                if any(o in n for n in got for o in others(tenant)):
                    leaks.append(f"{tenant}: the leaky function saw another tenant's value")
        finally:
            db.dispose()
    after = snapshot(admin)
    # Roles bound to no tenant see nothing: the owner (FORCE ROW LEVEL SECURITY applies to
    # it too) and a login role holding every tenant privilege but no binding.
    unset = sum(rows(dsn, f"SELECT count(*) FROM {table}")[0][0]
                for dsn in (shared_db.owner, shared_db.unbound)
                for table in ("key_value", "audit_entry"))

    figures.record(SECTION, "RLS: hand-written statements in tenant sessions",
                   f"{statements} ({len(READS)} reads, {len(WRITES)} writes, {len(REFUSED)} "
                   f"refused, 1 leaky function; x {len(TENANTS)} tenants x 2 others)")
    figures.record(SECTION, "RLS: other tenants' rows seen or changed", len(leaks))
    figures.record(SECTION, "RLS: inserts/moves/SET ROLE refused",
                   f"{refused_ok}/{len(REFUSED) * len(TENANTS) * 2}")
    figures.record(SECTION, "RLS: rows visible to roles bound to no tenant (owner, unbound)",
                   unset)
    assert leaks == [], leaks[:10]
    assert before == after
    assert refused_ok == len(REFUSED) * len(TENANTS) * 2
    assert unset == 0
    assert notices and all(n.startswith("secret of") for n in notices)



# Ways to make the session another tenant's, or a session with no tenant filter, that are
# harmless to try: PostgreSQL lets them run (a setting, or something in the session's own
# temporary schema, which runs as the tenant's role itself). The query after each must still
# see this tenant's rows and only them.
ALLOWED_BUT_HARMLESS: list[tuple[str, list[str]]] = [
    ("set_config(app.server_name) for the transaction",
     ["SELECT set_config('app.server_name', :other, true)"]),
    ("set_config(app.server_name) for the session",
     ["SELECT set_config('app.server_name', :other, false)"]),
    ("SET app.server_name", ["SET app.server_name = 'x'", "SET app.server_name TO DEFAULT",
                             "SELECT set_config('app.server_name', :other, false)"]),
    ("RESET ROLE / SET ROLE NONE", ["RESET ROLE", "SET ROLE NONE"]),
    ("SECURITY DEFINER function in pg_temp",
     ["CREATE FUNCTION pg_temp.all_names() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER "
      "AS 'SELECT server_name FROM public.key_value'",
      "CREATE TEMP VIEW escape_probe AS SELECT * FROM pg_temp.all_names() AS server_name"]),
    ("temporary view over the table",
     ["CREATE TEMP VIEW escape_probe AS SELECT server_name FROM public.key_value"]),
    ("temporary table shadowing the mapping",
     ["CREATE TEMP TABLE wabot_tenant_role (role_name text, server_name text)",
      "INSERT INTO wabot_tenant_role VALUES (current_user, :other)"]),
]


def escapes(shared_db: SharedDb, tenant: str, other: str) -> list[tuple[str, str]]:
    """Statements that would lift the tenant's confinement; PostgreSQL must refuse each."""
    owner_role = str(urlsplit(shared_db.owner).username)
    other_role = shared_db.role(other)
    return [
        ("SET ROLE owner", f'SET ROLE "{owner_role}"'),
        ("SET ROLE other tenant's role", f'SET ROLE "{other_role}"'),
        ("SET ROLE superuser", f"SET ROLE {SUPERUSER}"),
        ("SET SESSION AUTHORIZATION other", f'SET SESSION AUTHORIZATION "{other_role}"'),
        ("GRANT owner TO me", f'GRANT "{owner_role}" TO CURRENT_USER'),
        ("GRANT other tenant's role TO me", f'GRANT "{other_role}" TO CURRENT_USER'),
        ("ALTER ROLE me BYPASSRLS", "ALTER ROLE CURRENT_USER BYPASSRLS"),
        # Allowed to set, but then every query a policy would filter fails instead.
        ("SET row_security = off", "SET row_security = off"),
        ("CREATE ROLE", "CREATE ROLE escape_probe LOGIN BYPASSRLS"),
        ("rebind: UPDATE mapping", "UPDATE wabot_tenant_role SET server_name = :other"),
        ("rebind: INSERT mapping", "INSERT INTO public.wabot_tenant_role (role_name, "
         "server_name) VALUES (current_user, :other)"),
        ("unbind: DELETE mapping", "DELETE FROM public.wabot_tenant_role"),
        ("ALTER TABLE ... DISABLE ROW LEVEL SECURITY",
         "ALTER TABLE key_value DISABLE ROW LEVEL SECURITY"),
        ("ALTER TABLE ... NO FORCE ROW LEVEL SECURITY",
         "ALTER TABLE key_value NO FORCE ROW LEVEL SECURITY"),
        ("ALTER TABLE audit_entry DISABLE ROW LEVEL SECURITY",
         "ALTER TABLE audit_entry DISABLE ROW LEVEL SECURITY"),
        ("mapping: DISABLE ROW LEVEL SECURITY",
         "ALTER TABLE wabot_tenant_role DISABLE ROW LEVEL SECURITY"),
        ("DROP POLICY", "DROP POLICY tenant_isolation ON key_value"),
        ("ALTER POLICY", "ALTER POLICY tenant_isolation ON key_value USING (true)"),
        ("CREATE POLICY (permissive, OR-ed)", "CREATE POLICY escape_probe ON key_value "
         "USING (true) WITH CHECK (true)"),
        ("mapping: CREATE POLICY", "CREATE POLICY escape_probe ON wabot_tenant_role "
         "USING (true)"),
        ("ALTER TABLE ... OWNER TO me", "ALTER TABLE key_value OWNER TO CURRENT_USER"),
        ("ALTER TABLE ... RENAME", "ALTER TABLE key_value RENAME TO key_value_old"),
        ("DROP TABLE", "DROP TABLE key_value"),
        ("TRUNCATE (not subject to RLS)", "TRUNCATE key_value"),
        ("CREATE TRIGGER", "CREATE TRIGGER escape_probe BEFORE INSERT ON key_value "
         "FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()"),
        ("SECURITY DEFINER function in public",
         "CREATE FUNCTION public.escape_probe() RETURNS SETOF text LANGUAGE sql "
         "SECURITY DEFINER AS 'SELECT server_name FROM public.key_value'"),
        ("view in public", "CREATE VIEW public.escape_probe AS SELECT * FROM key_value"),
        ("table in public", "CREATE TABLE public.escape_probe (x int)"),
        ("CREATE SCHEMA", "CREATE SCHEMA escape_probe"),
        ("ALTER DEFAULT PRIVILEGES for the owner",
         f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner_role}" GRANT ALL ON TABLES TO PUBLIC'),
    ]


def security_state(admin: str) -> list[tuple[Any, ...]]:
    return rows(admin, "SELECT relname, relrowsecurity, relforcerowsecurity, "
                       "pg_get_userbyid(relowner) FROM pg_class WHERE relname IN "
                       "('audit_entry', 'key_value', 'wabot_tenant_role') ORDER BY 1") \
        + rows(admin, "SELECT tablename, policyname, permissive, roles::text, cmd, qual, "
                      "with_check FROM pg_policies ORDER BY 1, 2") \
        + rows(admin, "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles "
                      "WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1") \
        + rows(admin, "SELECT roleid::regrole::text, member::regrole::text FROM pg_auth_members "
                      "WHERE roleid::regrole::text NOT LIKE 'pg\\_%' ORDER BY 1, 2") \
        + rows(admin, "SELECT * FROM wabot_tenant_role ORDER BY 1")


def test_a_tenant_session_cannot_switch_tenant_with_set_config(shared_db: SharedDb) -> None:
    """The known gap of the earlier design: the tenant was the setting app.server_name. Now it
    is the login role's binding; settings and whatever a session can make in its own temporary
    schema change nothing."""
    figures.section(SECTION, "5. Isolation matrix")
    results: list[str] = []
    leaks: list[str] = []
    for tenant in TENANTS:
        db = Database(shared_db.tenants[tenant], tenant)
        try:
            for other in others(tenant):
                for label, statements in ALLOWED_BUT_HARMLESS:
                    with db.session() as s:
                        for sql in statements:
                            s.execute(text(sql), {"other": other})
                        probe = ("SELECT server_name FROM escape_probe"
                                 if any("escape_probe" in x for x in statements)
                                 else "SELECT server_name FROM key_value")
                        seen = {r[0] for r in s.execute(text(probe))}
                        # The policy's lookup is bound to public.wabot_tenant_role when the
                        # policy was made; a temp table of that name does not replace it.
                        mapping = {r[0] for r in s.execute(
                            text("SELECT server_name FROM public.wabot_tenant_role"))}
                        s.rollback()
                    if seen != {tenant}:
                        leaks.append(f"{tenant}: {label}: saw {sorted(seen)}")
                    if mapping != {tenant}:
                        leaks.append(f"{tenant}: {label}: the mapping showed {sorted(mapping)}")
                    results.append(label)
            # And across transactions: a session-level setting outlives the transaction.
            with db.session() as s:
                s.execute(text("SELECT set_config('app.server_name', 't-beta', false)"))
            with db.session() as s:
                seen = {r[0] for r in s.execute(text("SELECT server_name FROM key_value"))}
            if seen != {tenant}:
                leaks.append(f"{tenant}: session-level setting: saw {sorted(seen)}")
        finally:
            db.dispose()
    figures.record(SECTION, "RLS: tenant switches in tenant sessions (set_config/SET "
                   "app.server_name, SECURITY DEFINER function and views in pg_temp)",
                   f"{len(results)} ({len(ALLOWED_BUT_HARMLESS)} kinds x {len(TENANTS)} "
                   f"tenants x 2 others); other tenants' rows seen: {len(leaks)}")
    assert leaks == [], leaks[:10]


def test_a_tenant_session_cannot_turn_row_level_security_off(shared_db: SharedDb) -> None:
    """The other known gap of the earlier design: the workers' role owned the tables. Now it
    owns nothing and can become no role that does; every way to lift the policies is refused
    by PostgreSQL itself, and nothing about the tables' security changes."""
    figures.section(SECTION, "5. Isolation matrix")
    before_state = security_state(shared_db.admin)
    before_rows = snapshot(shared_db.admin)
    accepted: list[str] = []
    odd: list[str] = []
    tried = 0
    for tenant in TENANTS:
        db = Database(shared_db.tenants[tenant], tenant)
        try:
            for other in others(tenant):
                for label, sql in escapes(shared_db, tenant, other):
                    tried += 1
                    try:
                        with db.session() as s:
                            s.execute(text(sql), {"other": other})
                            seen = {r[0] for r in s.execute(
                                text("SELECT server_name FROM key_value"))}
                            s.rollback()  # accepted: undo it for everyone else, then report
                    except Exception as e:
                        if not refused(e):
                            odd.append(f"{tenant}: {label}: {str(e).splitlines()[0][:120]}")
                    else:
                        accepted.append(f"{tenant}: {label} (then saw {sorted(seen)})")
                with db.session() as s:  # the session still works, confined as before
                    seen = {r[0] for r in s.execute(text("SELECT server_name FROM key_value"))}
                if seen != {tenant}:
                    accepted.append(f"{tenant}: afterwards saw {sorted(seen)}")
        finally:
            db.dispose()
    after_state = security_state(shared_db.admin)
    # Positive control: the same statements as the owner role (each rolled back) do lift the
    # confinement, so the battery would catch a worker connecting as the owner again.
    owner_lifts = []
    with psycopg.connect(shared_db.owner) as conn:
        for label, sql in escapes(shared_db, TENANTS[0], TENANTS[1]):
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute(sql.replace(":other", "%(other)s"), {"other": TENANTS[1]})
                    names = {r[0] for r in conn.execute("SELECT server_name FROM key_value")}
                    if len(names) > 1:
                        owner_lifts.append(label)
            except psycopg.Error:
                pass
    kinds = len(escapes(shared_db, TENANTS[0], TENANTS[1]))
    figures.record(SECTION, "RLS: attempts to lift row-level security from tenant sessions "
                   "(SET ROLE, GRANT, ALTER ROLE, rebinding, DISABLE/NO FORCE RLS, DROP/ALTER/"
                   "CREATE POLICY, TRUNCATE, SECURITY DEFINER function, trigger, ...)",
                   f"{tried - len(accepted) - len(odd)}/{tried} refused by PostgreSQL "
                   f"({kinds} kinds x {len(TENANTS)} tenants x 2 others)")
    figures.record(SECTION, "RLS: tables' security, policies, roles, bindings changed",
                   "no" if after_state == before_state else "YES")
    figures.record(SECTION, "RLS positive control: the same statements as the owner role",
                   f"{len(owner_lifts)} of {kinds} lift it ({', '.join(owner_lifts)})")
    assert {"ALTER TABLE ... DISABLE ROW LEVEL SECURITY", "ALTER POLICY",
            "CREATE POLICY (permissive, OR-ed)"} <= set(owner_lifts)
    assert accepted == [], accepted[:10]
    assert odd == [], odd[:10]
    assert after_state == before_state
    assert snapshot(shared_db.admin) == before_rows
