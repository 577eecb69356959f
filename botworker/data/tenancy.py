"""Which tenant a PostgreSQL login role belongs to, and how a role gets (or loses) a tenant.

The tenant of a database session is not something the session says about itself: it is the
row of `wabot_tenant_role` whose `role_name` is the session's `current_user`. The row-level
security policies of every tenant table look it up (migration 0003), so what a session can see
and write follows from the role it logged in as. A session cannot change that from SQL:
`set_config` no longer matters, `SET ROLE` / `SET SESSION AUTHORIZATION` only reach roles the
login role is a member of (a tenant role is a member of none), the mapping table is read-only
to tenant roles (and each sees only its own row), and the tables, their policies and the
mapping belong to the owner role that runs the migrations, which no tenant role can become.

Two kinds of roles, then:
- the *owner* (migrator) role owns the schema; `python -m botworker.data.migrate` runs as it
  (WABOT_MIGRATE_URL), and so does `provision`, which also needs CREATEROLE to create roles;
- one or more *tenant* roles per tenant (one per bot is fine: a bot's DSN can then be revoked
  alone), created and bound by `provision`, with exactly the privileges below. Workers connect
  as these, and refuse to use the database when theirs is bound to another tenant (see
  `binding_problem`).

This module imports psycopg only inside the functions that talk to the server (the worker's
start-up check goes through SQLAlchemy, see db.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

MAPPING_TABLE = "wabot_tenant_role"
# What a tenant role may do, table by table. Audit rows are append-only for tenants (no
# UPDATE/DELETE: a bot cannot rewrite its own audit trail); no TRUNCATE anywhere (TRUNCATE is
# not subject to row-level security); no REFERENCES/TRIGGER. The mapping and the Alembic
# version are readable so a worker can check its binding and the schema revision at start.
TENANT_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "audit_entry": ("SELECT", "INSERT"),
    "key_value": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    MAPPING_TABLE: ("SELECT",),
    "alembic_version": ("SELECT",),
}
# The tenant tables that carry row-level security (also in migrations 0002/0003).
RLS_TABLES = ("audit_entry", "key_value")
# The tenant of the current role, as the policies and the worker's check read it.
TENANT_OF_CURRENT_ROLE = (
    f"(SELECT m.server_name FROM {MAPPING_TABLE} m WHERE m.role_name = current_user::text)"
)
# The newest revision this code needs; a worker waits (and says so) until the schema has it.
# tests/worker/unit/test_tenancy_roles.py checks it against the migrations directory.
SCHEMA_HEAD = "0003"

_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")


class ProvisionError(Exception):
    """A provisioning request that cannot be done as asked; the message is one line."""


def default_role_name(server_name: str) -> str:
    """`wabot_<serverName>` (dashes kept: role names are always quoted here); a name too long
    for PostgreSQL's 63 bytes keeps a prefix and gets a digest, so it stays unique."""
    name = f"wabot_{server_name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(server_name.encode()).hexdigest()[:8]
    return f"{name[:54]}_{digest}"


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677), computed
    here so that the clear password never travels to the server, where a `log_statement`
    setting would write it to the server log (as psql's \\password does)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def dsn_for_role(owner_url: str, role: str, password: str | None) -> str:
    """The owner's DSN with another user (and password): same host, port, database, options."""
    parts = urlsplit(owner_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = quote(role, safe="")
    if password is not None:
        user = f"{user}:{quote(password, safe='')}"
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, ""))


def psycopg_dsn(url: str) -> str:
    """The DSN psycopg takes for a URL as operators (or SQLAlchemy) write it."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def grant_statements(role: str, tables: dict[str, tuple[str, ...]] | None = None) -> list[Any]:
    """GRANTs that give `role` what a tenant role needs (and nothing else)."""
    from psycopg import sql

    ident = sql.Identifier(role)
    out: list[Any] = [sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident)]
    for table, privileges in (tables or TENANT_PRIVILEGES).items():
        out.append(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in privileges), sql.Identifier(table), ident))
    return out


@dataclass(frozen=True)
class Provisioned:
    role: str
    server_name: str
    created: bool
    password_set: bool
    dsn_file: Path | None

    def describe(self) -> str:
        """One line for the operator of the system; nothing secret in it."""
        what = ["created" if self.created else "existing role"]
        if self.password_set:
            what.append("password set")
        if self.dsn_file is not None:
            what.append(f"DSN written to {self.dsn_file} (mode 0600)")
        return f"role {self.role} -> tenant {self.server_name} ({', '.join(what)})"


def _role_row(conn: Any, role: str) -> tuple[Any, ...] | None:
    row = conn.execute(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcanlogin FROM pg_roles "
        "WHERE rolname = %s", (role,)).fetchone()
    return None if row is None else tuple(row)


def _unsafe_memberships(conn: Any, role: str) -> list[str]:
    """Roles `role` can become (SET ROLE) or inherit from that would lift its confinement:
    the owner of a tenant table, or another role bound to a tenant."""
    rows = conn.execute(
        "SELECT r.rolname FROM pg_roles r WHERE r.rolname <> %s "
        "AND pg_has_role(%s, r.oid, 'MEMBER') AND ("
        "  r.oid IN (SELECT c.relowner FROM pg_class c WHERE c.relkind = 'r' "
        "            AND c.relname = ANY(%s))"
        f"  OR r.rolname IN (SELECT role_name FROM {MAPPING_TABLE}))",
        (role, role, list(TENANT_PRIVILEGES))).fetchall()
    return [r[0] for r in rows]


def provision(owner_url: str, server_name: str, role: str | None = None, *,
              password: str | None = None, set_password: bool = False,
              dsn_file: Path | None = None) -> Provisioned:
    """Create (if missing) a login role for `server_name`, grant it the tenant privileges and
    bind it to the tenant. Runs as the owner role (CREATEROLE needed to create a role), after
    the migrations. Idempotent. Refuses a role that could escape row-level security (superuser,
    BYPASSRLS, CREATEROLE, the tables' owner or a member of it or of another tenant's role) and
    a role already bound to another tenant.

    A password is set when `set_password` (generated unless `password` is given); with
    `dsn_file` the tenant's DSN, password included, is written there (0600) and nowhere else.
    """
    import psycopg

    role = role or default_role_name(server_name)
    _check_names(role, server_name)
    if dsn_file is not None:
        set_password = True
    if set_password and password is None:
        password = secrets.token_urlsafe(24)
    with psycopg.connect(psycopg_dsn(owner_url), autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT to_regclass(%s)", (MAPPING_TABLE,)).fetchone() == (None,):
            raise ProvisionError("the schema has no tenant mapping: run the migrations first")
        me = conn.execute("SELECT current_user").fetchone()
        if me is not None and me[0] == role:
            raise ProvisionError(f"{role} is the role running this command (the owner)")
        with conn.transaction():
            created = _ensure_plain_role(conn, role)
            _bind(conn, role, server_name, password if set_password else None)
    if dsn_file is not None:
        _write_private(dsn_file, dsn_for_role(owner_url, role, password) + "\n")
    return Provisioned(role, server_name, created, set_password, dsn_file)


def _check_names(role: str, server_name: str) -> None:
    if not _ROLE_RE.match(role):
        raise ProvisionError(f"role name {role!r}: use a-z, 0-9, '_' and '-', at most 63")
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", server_name) or len(server_name) > 63:
        raise ProvisionError(f"serverName {server_name!r} is not a valid tenant name")


def _ensure_plain_role(conn: Any, role: str) -> bool:
    """Create `role` as a plain login role, or refuse an existing one that could lift
    row-level security or SET ROLE out of its tenant. True when it was created."""
    from psycopg import sql

    existing = _role_row(conn, role)
    created = existing is None
    if created:
        conn.execute(sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
            "NOREPLICATION NOBYPASSRLS").format(sql.Identifier(role)))
    else:
        assert existing is not None
        superuser, bypass, createrole, _login = existing
        if superuser or bypass or createrole:
            raise ProvisionError(
                f"role {role} is SUPERUSER, BYPASSRLS or CREATEROLE: it could lift "
                "row-level security; use a plain login role")
    bad = _unsafe_memberships(conn, role)
    if bad:
        raise ProvisionError(
            f"role {role} is a member of {', '.join(sorted(bad))} (the tables' owner or "
            "another tenant's role): it could SET ROLE out of its tenant")
    return created


def _bind(conn: Any, role: str, server_name: str, password: str | None) -> None:
    """Bind `role` to `server_name` (refused when bound to another tenant), set its password
    when one is given, and grant it the tenant privileges."""
    from psycopg import sql

    bound = conn.execute(
        f"SELECT server_name FROM {MAPPING_TABLE} WHERE role_name = %s",
        (role,)).fetchone()
    if bound is not None and bound[0] != server_name:
        raise ProvisionError(f"role {role} is bound to tenant {bound[0]}; revoke it "
                             "first (a role serves one tenant)")
    if password is not None:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(scram_verifier(password))))
    for stmt in grant_statements(role):
        conn.execute(stmt)
    conn.execute(f"INSERT INTO {MAPPING_TABLE} (role_name, server_name) "
                 "VALUES (%s, %s) ON CONFLICT (role_name) DO NOTHING",
                 (role, server_name))


def revoke(owner_url: str, role: str, *, drop: bool = False) -> str:
    """Unbind `role` from its tenant and take its privileges back (and drop it with `drop`).
    Its open sessions keep their connection but, unbound, see and write no tenant row."""
    import psycopg
    from psycopg import sql

    with (psycopg.connect(psycopg_dsn(owner_url), autocommit=True, connect_timeout=10) as conn,
          conn.transaction()):
            gone = conn.execute(f"DELETE FROM {MAPPING_TABLE} WHERE role_name = %s "
                                "RETURNING server_name", (role,)).fetchone()
            if _role_row(conn, role) is not None:
                for table in TENANT_PRIVILEGES:
                    conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(
                        sql.Identifier(table), sql.Identifier(role)))
                conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(
                    sql.Identifier(role)))
                if drop:
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    tenant = f" from tenant {gone[0]}" if gone else " (it was bound to no tenant)"
    return f"role {role} revoked{tenant}{'; role dropped' if drop else ''}"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, without a moment where it is readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# --- the worker's start-up check ----------------------------------------------------------------

BINDING_QUERY = f"""
SELECT current_user::text,
       (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),
       (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
         WHERE c.relkind = 'r' AND c.relname IN ('audit_entry', 'key_value', '{MAPPING_TABLE}')
           AND pg_has_role(current_user, c.relowner, 'MEMBER')),
       to_regclass('{MAPPING_TABLE}') IS NOT NULL,
       to_regclass('alembic_version') IS NOT NULL,
       CASE WHEN to_regclass('{MAPPING_TABLE}') IS NOT NULL
            THEN has_table_privilege('{MAPPING_TABLE}', 'SELECT') END,
       CASE WHEN to_regclass('alembic_version') IS NOT NULL
            THEN has_table_privilege('alembic_version', 'SELECT') END
"""


@dataclass(frozen=True)
class Binding:
    """What the worker learnt about its role; `problem` is None when it may use the database,
    else one line saying what is wrong and how to fix it (nothing secret)."""

    role: str
    tenant: str | None
    problem: str | None
    permanent: bool  # a configuration problem (vs. a schema that is not migrated yet)


def binding_problem(conn: Any, server_name: str) -> Binding:
    """Check, on a SQLAlchemy connection of the worker's role, that the role is bound to
    `server_name`, cannot lift row-level security, and the schema is at SCHEMA_HEAD or newer."""
    from sqlalchemy import text

    role, bypass, owns, has_mapping, has_version, may_map, may_version = conn.execute(
        text(BINDING_QUERY)).one()
    provision = f"python -m botworker.data.migrate provision --tenant {server_name}"
    provision_hint = f"bind it with `{provision} --role {role}` as the owner role"
    if bypass:
        return Binding(role, None, f"database role {role} bypasses row-level security "
                       "(SUPERUSER or BYPASSRLS); workers must connect as a tenant role: make "
                       f"one with `{provision} --dsn-file FILE` as the owner role", True)
    if owns:
        return Binding(role, None, f"database role {role} owns (or can become the owner of) "
                       f"{owns} and could turn row-level security off; workers must connect "
                       "as a tenant role, migrations run as the owner", True)
    if not has_version or not has_mapping:
        return Binding(role, None, "the database schema is not migrated yet (run "
                       "`python -m botworker.data.migrate` as the owner role)", False)
    if not may_map or not may_version:
        # Only `provision` grants these: a role nobody provisioned.
        return Binding(role, None, f"database role {role} is bound to no tenant; "
                       + provision_hint, True)
    version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if version is None or str(version) < SCHEMA_HEAD:
        return Binding(role, None, f"the database schema is at revision {version}, this "
                       f"worker needs {SCHEMA_HEAD} (run `python -m botworker.data.migrate` "
                       "as the owner role)", False)
    tenant = conn.execute(text(
        f"SELECT server_name FROM {MAPPING_TABLE} WHERE role_name = current_user::text"
    )).scalar()
    if tenant is None:
        return Binding(role, None, f"database role {role} is bound to no tenant; "
                       + provision_hint, True)
    if tenant != server_name:
        return Binding(role, str(tenant), f"database role {role} is bound to tenant {tenant}, "
                       f"but this bot's serverName is {server_name}: refusing to use the "
                       "database (give the bot a DSN of a role bound to its own tenant)", True)
    return Binding(role, str(tenant), None, False)
