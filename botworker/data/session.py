"""What `ctx.db()` yields: a tenant's session that loads the ORM only when a plugin uses it.

A bot's own rows (the key-value store behind `!note`, `kv.py`) are written with the driver
alone (sqlite3, or psycopg which the audit rows already loaded); SQLAlchemy's ORM and sqlmodel
cost a bot ~20 MiB for the rest of its life (bench/PROFILE-density.md), so they are imported
only when a plugin does something only a sqlmodel Session can do. Then the session *becomes*
one: every attribute a Session has (`exec`, `add`, `execute`, `info`, ...) is the real
Session's, created on first use by `orm.tenant_session` (the same tenant walls as before).
Work done through the driver before that moment is rolled back and done again in the ORM
session, so one `with ctx.db()` block stays one transaction either way.

Tenant walls on the driver path: every statement names the session's tenant
(`server_name = <tenant>`), fixed here; on PostgreSQL the login role's row-level security
confines the statement as well (tenancy.py), exactly as for the ORM.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def driver_connect(url: str, connect_timeout_s: int, statement_timeout_ms: int) -> Any:
    """One connection through the database's own driver (sqlite3 or psycopg), no SQLAlchemy:
    the bot's own rows and its audit rows both go this way, with the same time limits."""
    if url.startswith("sqlite:///"):
        import sqlite3

        return sqlite3.connect(url.removeprefix("sqlite:///"), timeout=connect_timeout_s,
                               check_same_thread=False)
    import psycopg

    from .tenancy import psycopg_dsn

    return psycopg.connect(
        psycopg_dsn(url), connect_timeout=connect_timeout_s,
        options=f"-c statement_timeout={statement_timeout_ms}",
        application_name="wabot-worker")


class Connections:
    """A tenant's few kept driver connections (one per concurrent session, at most `keep`
    idle ones kept for the next)."""

    def __init__(self, url: str, connect_timeout_s: int = 3, statement_timeout_ms: int = 5000,
                 keep: int = 2) -> None:
        self.sqlite = url.startswith("sqlite:///")
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = statement_timeout_ms
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: list[Any] = []

    @property
    def placeholder(self) -> str:
        return "?" if self.sqlite else "%s"

    def connect(self) -> Any:
        return driver_connect(self._url, self._connect_timeout_s, self._statement_timeout_ms)

    def take(self) -> tuple[Any, bool]:
        """A connection and whether it was kept from before (it may have gone stale)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self.connect(), False

    def give_back(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        close_quietly(conn)

    def unavailable(self, err: BaseException) -> bool:
        """Does `err` mean "cannot talk to the database" (rather than a bad statement)?"""
        if self.sqlite:
            import sqlite3

            return isinstance(err, sqlite3.OperationalError)
        import psycopg

        return isinstance(err, psycopg.OperationalError | psycopg.InterfaceError)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)


def close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # broken already: nothing left to release
        conn.close()


class SessionSource(Protocol):
    """What a session needs of its database (db.Database is one): its tenant, its kept driver
    connections, and the engine for a switch to the ORM. Named here so that db.py imports
    this module and not the other way round."""

    server_name: str
    connections: Connections

    @property
    def engine(self) -> Engine: ...


class TenantSession:
    """One `with ctx.db() as session:` block. Driver statements until the ORM is asked for;
    then a sqlmodel Session (see the module's docstring)."""

    def __init__(self, db: SessionSource) -> None:
        self._db = db
        self._conn: Any = None
        self._kept = False
        self._statements = 0
        self._orm: Any = None
        self._orm_scope: Any = None
        self._writes: list[tuple[str, str, str]] = []  # kv_set calls, for a switch to the ORM

    @property
    def tenant(self) -> str:
        return self._db.server_name

    @property
    def uses_driver(self) -> bool:
        return self._orm is None

    @property
    def placeholder(self) -> str:
        return self._db.connections.placeholder

    @property
    def sqlite(self) -> bool:
        return self._db.connections.sqlite

    # --- the driver path ---------------------------------------------------------------

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement in this session's transaction; its rows (none for a write). A kept
        connection the server has dropped meanwhile is replaced once, when nothing has been
        done on it yet in this session."""
        while True:
            if self._conn is None:
                self._conn, self._kept = self._db.connections.take()
            try:
                cur = self._conn.cursor()
                try:
                    cur.execute(sql, tuple(params))
                    rows = list(cur.fetchall()) if cur.description else []
                finally:
                    cur.close()
            except Exception as err:
                retry = (self._kept and self._statements == 0
                         and self._db.connections.unavailable(err))
                close_quietly(self._conn)
                self._conn = None
                if retry:
                    continue
                raise
            self._statements += 1
            return rows

    def remember_write(self, scope: str, key: str, value: str) -> None:
        self._writes.append((scope, key, value))

    # --- the ORM, on first use -----------------------------------------------------------

    def orm(self) -> Any:
        """The sqlmodel Session this block continues in (created now if needed)."""
        if self._orm is None:
            from .orm import orm_kv_set, tenant_session

            if self._conn is not None:  # its writes are redone below, in one transaction
                self._end_driver(commit=False)
            scope = tenant_session(self._db.engine, self.tenant)
            self._orm = scope.__enter__()
            self._orm_scope = scope
            for scope_name, key, value in self._writes:
                orm_kv_set(self._orm, scope_name, key, value)
        return self._orm

    def __getattr__(self, name: str) -> Any:
        # Anything a sqlmodel Session offers: the plugin is using the ORM.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.orm(), name)

    # --- the end of the block ------------------------------------------------------------

    def finish(self, error: BaseException | None) -> None:
        """Commit (no error) or roll back what the block did, on whichever path it took."""
        if self._orm_scope is not None:
            scope, self._orm_scope = self._orm_scope, None
            if error is None:
                scope.__exit__(None, None, None)
            else:
                scope.__exit__(type(error), error, error.__traceback__)
        if self._conn is not None:
            self._end_driver(commit=error is None)

    def _end_driver(self, commit: bool) -> None:
        conn, self._conn = self._conn, None
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        except Exception:
            close_quietly(conn)
            raise
        self._db.connections.give_back(conn)

