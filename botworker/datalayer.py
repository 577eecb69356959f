"""The worker's handle on its database, without importing SQLAlchemy until it is needed.

At start the schema is migrated in a child process (see data/migrate.py); the engine, and with
it SQLAlchemy and sqlmodel, is created on the first command or audit row that needs it. While
the schema is not in place (the database was down at start) every use answers "unavailable"
quickly and the migration is retried with backoff, so a database that comes back later is
picked up without restarting the worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .backoff import BackoffPolicy
from .config import redact_dsn
from .context import DatabaseUnavailable
from .logs import get_logger
from .metrics import Metrics

if TYPE_CHECKING:
    from .data.db import Database

log = get_logger("datalayer")

Migrator = Callable[[str], tuple[bool, str]]


def _default_migrator(url: str) -> tuple[bool, str]:
    from .data.migrate import run_in_child

    return run_in_child(url)


MIGRATION_BACKOFF = BackoffPolicy(base_s=2.0, cap_s=60.0)


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

    @property
    def schema_ready(self) -> bool:
        return self._migrated

    @property
    def migration_failures(self) -> int:
        return self._failures

    def ensure_schema(self, wait: bool = True) -> bool:
        """Run the migrations unless done; False while they cannot run (retried later)."""
        if self._migrated:
            return True
        if not self._lock.acquire(blocking=wait):
            return False  # another thread is migrating right now
        try:
            if self._migrated:
                return True
            if time.monotonic() < self._next_try:
                return False
            ok, reason = self._migrator(self.url)
            if ok:
                self._migrated = True
                self._failures = 0
                self._metrics.db_up(True)
                log.info("database schema is up to date", extra={"db": redact_dsn(self.url)})
                return True
            self._failures += 1
            delay = self._backoff.delay(self._failures, 0.5 + 0.5 * (time.monotonic() % 1))
            self._next_try = time.monotonic() + delay
            self._metrics.db_up(False)
            log.warning(
                "database migrations failed; retrying later",
                extra={"db": redact_dsn(self.url), "error": reason, "retry_in_s": round(delay)},
            )
            return False
        finally:
            self._lock.release()

    def database(self) -> Database | None:
        """The Database, or None while the schema cannot be ensured. Never blocks on another
        thread's migration (the pipeline must not wait behind it)."""
        if not self.ensure_schema(wait=False):
            return None
        if self._db is None:
            with self._lock:
                if self._db is None:
                    from .data.db import Database

                    self._db = Database(
                        self.url, self.server_name, on_health=self._metrics.db_up
                    )
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
        if self._db is not None:
            self._db.dispose()
