"""A PostgreSQL server of the test's own (so it can be stopped) and application roles that
are not superusers (row-level security does not apply to superusers)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from devcluster.postgres import PostgresServer


@contextlib.contextmanager
def own_server() -> Iterator[PostgresServer]:
    """Outside pytest's basetemp: a concurrent pytest session resets /tmp/pytest-of-<user> to
    0700, which would lock the postgres user out of its data directory."""
    root = Path(tempfile.mkdtemp(prefix="wabot-rel-pg-"))
    server = PostgresServer(root / "pg").init().start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def app_role(server: PostgresServer, dbname: str, role: str | None = None,
             password: str | None = None, owner: bool = True) -> str:
    """A LOGIN role without SUPERUSER/BYPASSRLS (owner of `dbname` if `owner`); its DSN."""
    role = role or f"wabot_app_{secrets.token_hex(4)}"
    password = password or f"pw-{secrets.token_hex(8)}"
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        if owner:
            conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO {role}')
            conn.execute(f"ALTER SCHEMA public OWNER TO {role}")
    return str(server.dsn(dbname, user=role, password=password))


def rows(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql, params).fetchall())
