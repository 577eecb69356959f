"""The database as one tenant's commands see it: scoped sessions, and an engine when needed.

A session (`Database.session()`, what `ctx.db()` opens) starts on the driver alone and becomes
a sqlmodel Session only when a plugin uses the ORM (session.py); the key-value store that the
bundled plugins use needs no ORM (kv.py). So SQLAlchemy is imported, and the engine made, the
first time something needs them: an ORM session, or `check_binding`. On PostgreSQL the tenant
is the login role's (see tenancy.py): nothing in a session names it, so nothing in a session
can change it; `check_binding` makes sure, at start, that the role is the bot's own tenant's.

Connection trouble becomes `DatabaseUnavailable`, so a command can say "try again later"
instead of failing generically, and the worker's WhatsApp connection is never affected.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..core.context import DatabaseUnavailable
from .health import Health
from .session import Connections, TenantSession

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .tenancy import Binding


def normalize_url(url: str) -> str:
    """SQLAlchemy URL for a DSN as operators write them (postgres:// and postgresql:// use
    psycopg 3, the driver this image ships)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_unavailable(err: BaseException) -> bool:
    """A SQLAlchemy error that means "cannot talk to the database"."""
    from sqlalchemy import exc

    if isinstance(err, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return True
    return isinstance(err, exc.DBAPIError) and bool(err.connection_invalidated)


def _sqlalchemy_error(err: BaseException) -> bool:
    """Without importing SQLAlchemy to find out (a driver-only bot never loaded it)."""
    return any(c.__module__.startswith("sqlalchemy.") for c in type(err).__mro__)


def make_engine(url: str, connect_timeout: float = 3.0, statement_timeout_ms: int = 5000) -> Engine:
    """An engine sized for one bot: a handful of connections (hundreds of bots share one
    server), pre-ping so a restarted server is noticed, bounded connect and statement times so
    a dead or slow database degrades commands instead of stalling the pipeline."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

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
        self.url = url
        self.server_name = server_name
        self.health = health or Health()
        self.is_postgres = normalize_url(url).split(":", 1)[0].split("+", 1)[0] == "postgresql"
        self.connections = Connections(url)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (SQLAlchemy is imported here, the first time)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = make_engine(self.url)
            return self._engine

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A tenant-scoped session (session.TenantSession: the driver, or a sqlmodel Session
        once the ORM is used), committed on success and rolled back on error.

        Raises DatabaseUnavailable when the database cannot be reached (at once, while it is
        known to be down, rather than making every command wait for a connect timeout).
        """
        if self.health.fail_fast():
            raise DatabaseUnavailable("database marked down")
        session = TenantSession(self)
        try:
            try:
                yield session
            except BaseException as err:
                # A failed rollback (the connection is gone) must not hide why it failed.
                with contextlib.suppress(Exception):
                    session.finish(err)
                raise
            session.finish(None)
        except DatabaseUnavailable:
            self.health.mark(False)
            raise
        except Exception as err:
            down = self._unavailable(err)
            if down is None:
                raise
            self.health.mark(False)
            raise down from err
        self.health.mark(True)

    def _unavailable(self, err: Exception) -> DatabaseUnavailable | None:
        if _sqlalchemy_error(err):
            return DatabaseUnavailable(err.__class__.__name__) if is_unavailable(err) else None
        if self.connections.unavailable(err):
            return DatabaseUnavailable(err.__class__.__name__)
        return None

    def check_binding(self) -> Binding:
        """On PostgreSQL: is this role bound to this bot's tenant, unable to lift row-level
        security, on a migrated schema? (SQLite: always fine.) Raises DatabaseUnavailable
        when the server cannot be reached."""
        from sqlalchemy import exc

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
        self.connections.close()
        if self._engine is not None:
            self._engine.dispose()
