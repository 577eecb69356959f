"""Audit rows into the database with the driver alone: sqlite3 (the standard library) or
psycopg, no SQLAlchemy.

Every command a bot answers leaves an audit row, so whatever writes them is loaded by every bot
that has worked at all. Through SQLAlchemy that cost 11 MB (SQLite) to 25 MB (PostgreSQL) of
resident memory per bot for the rest of its life; with the driver alone 0.4 and 11 MB
(docs/benchmarks/worker-memory.md). SQLAlchemy, and sqlmodel, are still loaded by a bot whose
commands open database sessions (db.py).

One connection, opened on first use, kept, and replaced when it fails (see `_run`).
Connection trouble becomes `DatabaseUnavailable`, so the audit writer spools the rows and
retries; rows of another tenant are refused before anything is sent (row-level security would
refuse them too, on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..core.context import CrossTenantWrite, DatabaseUnavailable
from .health import Health
from .session import driver_connect

COLUMNS = ("id", "server_name", "bot_id", "chat", "sender_hash", "command", "result",
           "latency_ms", "created_at")
# SQLAlchemy's DateTime on SQLite: this text, no UTC offset (the ORM reads it back the same).
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _insert(placeholder: str) -> str:
    return (f"INSERT INTO audit_entry ({', '.join(COLUMNS)}) VALUES "
            f"({', '.join([placeholder] * len(COLUMNS))}) ON CONFLICT (id) DO NOTHING")


class AuditRows:
    """The worker's `AuditStore` (audit.py)."""

    def __init__(self, url: str, server_name: str, health: Health | None = None,
                 connect_timeout_s: int = 3, statement_timeout_ms: int = 5000) -> None:
        self.server_name = server_name
        self.health = health or Health()
        self._sqlite = url.startswith("sqlite:///")
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = statement_timeout_ms
        self._lock = threading.Lock()
        self._conn: Any = None

    def _connect(self) -> Any:
        return driver_connect(self._url, self._connect_timeout_s, self._statement_timeout_ms)

    def _unavailable(self, err: Exception) -> bool:
        if self._sqlite:
            import sqlite3

            return isinstance(err, sqlite3.OperationalError)
        import psycopg

        return isinstance(err, psycopg.OperationalError | psycopg.InterfaceError)

    def _run(self, sql: str, params: Sequence[Sequence[Any]] = ()) -> None:
        """One transaction; DatabaseUnavailable when it cannot be done. A kept connection that
        fails (the server restarted, a firewall dropped it while the bot was quiet) is
        replaced and the transaction tried once more on a new one: only a database that a
        new connection cannot reach is reported down. Trying again is safe, the insert skips
        rows already stored."""
        with self._lock:
            while True:
                kept = self._conn is not None
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    cur = self._conn.cursor()
                    try:
                        if params:
                            cur.executemany(sql, params)
                        else:
                            cur.execute(sql)
                    finally:
                        cur.close()
                    self._conn.commit()
                    break
                except Exception as err:
                    self._drop()
                    if not self._unavailable(err):
                        raise
                    if kept:
                        continue
                    self.health.mark(False)
                    raise DatabaseUnavailable(err.__class__.__name__) from err
        self.health.mark(True)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to release
                self._conn.close()
            self._conn = None

    def ping(self) -> bool:
        try:
            self._run("SELECT 1")
        except DatabaseUnavailable:
            return False
        return True

    def insert_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert audit rows, skipping IDs already stored. Raises DatabaseUnavailable."""
        if not rows:
            return
        if any(r["server_name"] != self.server_name for r in rows):
            raise CrossTenantWrite("audit row of another tenant")
        if self.health.fail_fast():
            raise DatabaseUnavailable("database marked down")
        values = [[self._value(c, r[c]) for c in COLUMNS] for r in rows]
        self._run(_insert("?" if self._sqlite else "%s"), values)

    def _value(self, column: str, value: Any) -> Any:
        if column != "created_at":
            return value
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        return when.strftime(SQLITE_TIME) if self._sqlite else when

    def close(self) -> None:
        with self._lock:
            self._drop()
