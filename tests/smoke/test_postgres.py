"""Proof that the PostgreSQL the data tests use is a real server."""

from __future__ import annotations

import psycopg
import pytest

from devcluster.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_table_written_and_read(pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE greeting (id serial PRIMARY KEY, text text NOT NULL)")
        conn.execute("INSERT INTO greeting (text) VALUES (%s), (%s)", ("hello", "olá 👋"))
        rows = conn.execute("SELECT text FROM greeting ORDER BY id").fetchall()
    assert rows == [("hello",), ("olá 👋",)]


def test_each_module_database_is_isolated(postgres: PostgresServer, pg_database: str) -> None:
    other = postgres.create_database("t_isolation_other")
    with psycopg.connect(other, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'greeting'"
        ).fetchone()
    assert tables == (0,)
