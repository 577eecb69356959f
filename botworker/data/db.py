"""The database as one tenant sees it: an engine, health, audit inserts, scoped sessions.

This module uses SQLAlchemy Core only; the ORM and sqlmodel (another ~10 MB) are imported by
`orm.py` when a command first opens a session. Audit rows are inserted with plain SQL. On
PostgreSQL the tenant is the login role's (see tenancy.py): nothing in a session names it, so
nothing in a session can change it; `check_binding` makes sure, at start, that the role is the
bot's own tenant's.

Connection trouble becomes `DatabaseUnavailable`, so a command can say "try again later"
instead of failing generically, and the worker's WhatsApp connection is never affected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, bindparam, create_engine, exc, text
from sqlalchemy.engine import Engine, make_url

from ..context import DatabaseUnavailable
from ..logs import get_logger

if TYPE_CHECKING:
    from .tenancy import Binding

log = get_logger("db")

# Errors that mean "cannot talk to the database", as opposed to a bug in a query.
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


class CrossTenantWrite(PermissionError):
    pass


_INSERT_AUDIT = text(
    "INSERT INTO audit_entry (id, server_name, bot_id, chat, sender_hash, command, result, "
    "latency_ms, created_at) VALUES (:id, :server_name, :bot_id, :chat, :sender_hash, "
    ":command, :result, :latency_ms, :created_at) ON CONFLICT (id) DO NOTHING"
).bindparams(bindparam("created_at", type_=DateTime(timezone=True)))


def normalize_url(url: str) -> str:
    """SQLAlchemy URL for a DSN as operators write them (postgres:// and postgresql:// use
    psycopg 3, the driver this image ships)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_unavailable(err: BaseException) -> bool:
    if isinstance(err, _UNAVAILABLE):
        return True
    return isinstance(err, exc.DBAPIError) and bool(err.connection_invalidated)


def make_engine(url: str, connect_timeout: float = 3.0, statement_timeout_ms: int = 5000) -> Engine:
    """An engine sized for one bot: a handful of connections (hundreds of bots share one
    server), pre-ping so a restarted server is noticed, bounded connect and statement times so
    a dead or slow database degrades commands instead of stalling the pipeline."""
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "sqlite":
        return create_engine(sa_url, connect_args={"timeout": connect_timeout})
    return create_engine(
        sa_url,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=300,
        pool_timeout=connect_timeout,
        connect_args={
            "connect_timeout": max(1, int(connect_timeout)),
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "wabot-worker",
        },
    )


class Database:
    """One tenant's view of the database, shared by the pipeline and the audit writer."""

    def __init__(
        self,
        url: str,
        server_name: str,
        retry_after_s: float = 2.0,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self.server_name = server_name
        self._on_health = on_health
        self.engine = make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._down_at: float | None = None
        self.bypasses_rls: bool | None = None

    @property
    def up(self) -> bool:
        return self._down_at is None

    def mark(self, up: bool) -> None:
        with self._lock:
            if up:
                self._down_at = None
            elif self._down_at is None:
                self._down_at = time.monotonic()
        if self._on_health is not None:
            self._on_health(up)

    def _fail_fast(self) -> bool:
        with self._lock:
            return (
                self._down_at is not None
                and time.monotonic() - self._down_at < self._retry_after_s
            )

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A tenant-scoped sqlmodel Session, committed on success and rolled back on error.

        Raises DatabaseUnavailable when the database cannot be reached (at once, while it is
        known to be down, rather than making every command wait for a connect timeout). The
        ORM (SQLAlchemy's and sqlmodel's, ~10 MB) is imported on the first call.
        """
        from .orm import tenant_session

        if self._fail_fast():
            raise DatabaseUnavailable("database marked down")
        try:
            with tenant_session(self.engine, self.server_name) as session:
                yield session
        except exc.SQLAlchemyError as err:
            if is_unavailable(err):
                self.mark(False)
                raise DatabaseUnavailable(str(err.__class__.__name__)) from err
            raise
        else:
            self.mark(True)

    def check_binding(self) -> Binding:
        """On PostgreSQL: is this role bound to this bot's tenant, unable to lift row-level
        security, on a migrated schema? (SQLite: always fine.) Raises DatabaseUnavailable
        when the server cannot be reached."""
        from .tenancy import Binding, binding_problem

        if not self.is_postgres:
            return Binding("", self.server_name, None, False)
        try:
            with self.engine.connect() as conn:
                binding = binding_problem(conn, self.server_name)
        except exc.SQLAlchemyError as err:
            if is_unavailable(err):
                self.mark(False)
                raise DatabaseUnavailable(str(err.__class__.__name__)) from err
            raise
        return binding

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                if self.is_postgres and self.bypasses_rls is None:
                    row = conn.execute(
                        text(
                            "SELECT rolsuper OR rolbypassrls FROM pg_roles "
                            "WHERE rolname = current_user"
                        )
                    ).scalar()
                    self.bypasses_rls = bool(row)
                    if self.bypasses_rls:
                        log.warning(
                            "the database role bypasses row-level security; workers must "
                            "connect as a tenant role (python -m botworker.data.migrate "
                            "provision)"
                        )
        except exc.SQLAlchemyError as err:
            if not is_unavailable(err):
                log.warning("database ping failed", extra={"error": str(err)[:300]})
            self.mark(False)
            return False
        self.mark(True)
        return True

    def insert_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert audit rows, skipping IDs already stored. Raises DatabaseUnavailable."""
        if not rows:
            return
        values = [
            {**r, "created_at": datetime.fromisoformat(r["created_at"])}
            if isinstance(r.get("created_at"), str)
            else r
            for r in rows
        ]
        for r in values:
            if r["server_name"] != self.server_name:
                raise CrossTenantWrite("audit row of another tenant")
        if self._fail_fast():
            raise DatabaseUnavailable("database marked down")
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_AUDIT, values)
        except exc.SQLAlchemyError as err:
            if is_unavailable(err):
                self.mark(False)
                raise DatabaseUnavailable(str(err.__class__.__name__)) from err
            raise
        self.mark(True)

    def dispose(self) -> None:
        self.engine.dispose()


