"""The worker's handle on its database, without importing SQLAlchemy until it is needed.

At start the worker makes sure the database can be used for its tenant. A SQLite file (the
default, beside the session) is the worker's own: it migrates it, in a child process (see
data/migrate.py). PostgreSQL is shared by every tenant: the worker does not migrate it (its
role may not change the schema; the deployment's migrate step does that as the owner role)
but checks, as its own role, that the schema is migrated and that the role is bound to this
bot's serverName and cannot lift row-level security (data/tenancy.py). A role bound to another
tenant, or to none, or a superuser/owner role, is refused with one clear log line saying what
to do; the database is then not used at all (audit rows wait in the spool on the bot's volume,
database commands answer "unavailable"), and the check is retried with backoff, so fixing the
role or the Secret's DSN is picked up without a restart, as is a database that was down.

The SQLite migration and the PostgreSQL role check run in child processes (data/child.py), so
an idle worker has loaded no database library; audit rows need only the driver
(data/auditrows.py); SQLAlchemy and sqlmodel are imported when a command first opens a
session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..config import redact_dsn
from ..core.backoff import BackoffPolicy
from ..core.context import DatabaseUnavailable
from ..data.health import Health
from ..logs import get_logger
from ..metrics import Metrics

if TYPE_CHECKING:
    from ..data.auditrows import AuditRows
    from ..data.db import Database

log = get_logger("datalayer")

Migrator = Callable[[str], tuple[bool, str]]


def _default_migrator(url: str) -> tuple[bool, str]:
    from ..data.migrate import run_in_child

    return run_in_child(url)


MIGRATION_BACKOFF = BackoffPolicy(base_s=2.0, cap_s=60.0)


def is_postgres_url(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgres", "postgresql")


class DataLayer:
    def __init__(
        self,
        url: str,
        server_name: str,
        metrics: Metrics,
        migrator: Migrator | None = None,
        backoff: BackoffPolicy = MIGRATION_BACKOFF,
    ) -> None:
        self.url = url
        self.server_name = server_name
        self._metrics = metrics
        self._migrator = migrator or _default_migrator
        self._backoff = backoff
        self._lock = threading.Lock()
        self._migrated = False
        self._failures = 0
        self._next_try = 0.0
        self._db: Database | None = None
        self._rows: AuditRows | None = None
        self._health = Health(on_change=metrics.db_up)
        self._postgres = is_postgres_url(url)
        self._last_problem: str | None = None

    @property
    def schema_ready(self) -> bool:
        return self._migrated

    @property
    def migration_failures(self) -> int:
        return self._failures

    @property
    def problem(self) -> str | None:
        """Why the database is not used, when that is a configuration problem (one line,
        nothing secret); None when it is used or merely unreachable."""
        return self._last_problem

    def ensure_schema(self, wait: bool = True) -> bool:
        """Migrate (SQLite) or check the role and schema (PostgreSQL) unless done; False while
        that cannot succeed (retried later, with backoff)."""
        if self._migrated:
            return True
        if not self._lock.acquire(blocking=wait):
            return False  # another thread is migrating right now
        try:
            if self._migrated:
                return True
            if time.monotonic() < self._next_try:
                return False
            if self._postgres:
                ok, reason, permanent = self._check_role()
            else:
                ok, reason = self._migrator(self.url)
                permanent = False
            if ok:
                self._migrated = True
                self._failures = 0
                self._last_problem = None
                self._metrics.db_up(True)
                log.info("database schema is up to date", extra={"db": redact_dsn(self.url)})
                return True
            self._failures += 1
            delay = self._backoff.delay(self._failures, 0.5 + 0.5 * (time.monotonic() % 1))
            self._next_try = time.monotonic() + delay
            self._metrics.db_up(False)
            extra = {"db": redact_dsn(self.url), "error": reason, "retry_in_s": round(delay)}
            if permanent:
                self._last_problem = reason
                log.error("not using the database: its role does not fit this bot",
                          extra=extra)
            else:
                log.warning("database not ready; retrying later", extra=extra)
            return False
        finally:
            self._lock.release()

    def _check_role(self) -> tuple[bool, str, bool]:
        """(ok, reason, permanent) of the PostgreSQL role check, run in a child process (the
        check needs SQLAlchemy and psycopg, which the worker itself may never use); the
        caller holds the lock."""
        from ..data.rolecheck import check_in_child

        binding, error = check_in_child(self.url, self.server_name)
        if binding is None:
            return False, error, False
        if binding.problem is None:
            log.info("database role is bound to this tenant",
                     extra={"role": binding.role, "server_name": binding.tenant})
            return True, "", False
        return False, binding.problem, binding.permanent

    def audit_rows(self) -> AuditRows | None:
        """Where audit rows go, or None while the schema cannot be ensured. Never blocks on
        another thread's migration (the audit writer spools meanwhile)."""
        if not self.ensure_schema(wait=False):
            return None
        if self._rows is None:
            from ..data.auditrows import AuditRows

            with self._lock:
                if self._rows is None:
                    self._rows = AuditRows(self.url, self.server_name, self._health)
        return self._rows

    def database(self) -> Database | None:
        """The Database for command sessions (SQLAlchemy is loaded here, on the first command
        that opens one), or None while the schema cannot be ensured."""
        if not self.ensure_schema(wait=False):
            return None
        if self._db is None:
            from ..data.db import Database

            with self._lock:
                if self._db is None:
                    self._db = Database(self.url, self.server_name, self._health)
        return self._db

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A tenant-scoped session for a command handler; DatabaseUnavailable when down."""
        db = self.database()
        if db is None:
            raise DatabaseUnavailable("database schema not available")
        with db.session() as s:
            yield s

    def dispose(self) -> None:
        if self._rows is not None:
            self._rows.close()
        if self._db is not None:
            self._db.dispose()
