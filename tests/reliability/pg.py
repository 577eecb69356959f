"""A PostgreSQL server of the test's own (so it can be stopped), and the roles production uses:
an owner (migrator) role that owns the schema and runs the migrations, and tenant roles made
by the real `provision` code, which the workers connect as (row-level security does not apply
to superusers, and the owner could switch it off)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from botworker.data.migrate import upgrade
from botworker.data.tenancy import dsn_for_role, provision
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


def migrated_database(server: PostgresServer, dbname: str) -> str:
    """A fresh database owned by a non-superuser owner role, migrated to head as that role;
    the owner's DSN (for provisioning; never for a worker)."""
    owner = server.create_owned_database(dbname)
    upgrade(owner)
    return owner


def tenant_role(owner_dsn: str, tenant: str, role: str | None = None,
                password: str | None = None) -> str:
    """A login role bound to `tenant` by `provision` (as an operator of the system would make
    it), with a known password; its DSN, as a bot's database Secret would hold it."""
    role = role or f"wabot_{tenant}_{secrets.token_hex(3)}".replace("-", "_")
    password = password or f"pw-{secrets.token_hex(8)}"
    provision(owner_dsn, tenant, role, password=password, set_password=True)
    return dsn_for_role(owner_dsn, role, password)


def rows(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql, params).fetchall())
