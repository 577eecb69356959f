"""The database as one tenant's commands see it: an engine and scoped sessions.

Loaded when a command first opens a session (audit rows go through auditrows.py, which needs
no SQLAlchemy); the ORM and sqlmodel are imported by `orm.py` at the same moment. On
PostgreSQL the tenant is the login role's (see tenancy.py): nothing in a session names it, so
nothing in a session can change it; `check_binding` makes sure, at start, that the role is the
bot's own tenant's.

Connection trouble becomes `DatabaseUnavailable`, so a command can say "try again later"
instead of failing generically, and the worker's WhatsApp connection is never affected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, exc
from sqlalchemy.engine import Engine, make_url

from ..core.context import DatabaseUnavailable
from .health import Health

if TYPE_CHECKING:
    from .tenancy import Binding

# Errors that mean "cannot talk to the database", as opposed to a bug in a query.
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


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
    """One tenant's sessions; `health` is shared with the worker's audit rows."""

    def __init__(self, url: str, server_name: str, health: Health | None = None) -> None:
        self.server_name = server_name
        self.health = health or Health()
        self.engine = make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A tenant-scoped sqlmodel Session, committed on success and rolled back on error.

        Raises DatabaseUnavailable when the database cannot be reached (at once, while it is
        known to be down, rather than making every command wait for a connect timeout). The
        ORM (SQLAlchemy's and sqlmodel's, ~10 MB) is imported on the first call.
        """
        from .orm import tenant_session

        if self.health.fail_fast():
            raise DatabaseUnavailable("database marked down")
        try:
            with tenant_session(self.engine, self.server_name) as session:
                yield session
        except exc.SQLAlchemyError as err:
            if is_unavailable(err):
                self.health.mark(False)
                raise DatabaseUnavailable(str(err.__class__.__name__)) from err
            raise
        else:
            self.health.mark(True)

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
                self.health.mark(False)
                raise DatabaseUnavailable(str(err.__class__.__name__)) from err
            raise
        return binding

    def dispose(self) -> None:
        self.engine.dispose()


