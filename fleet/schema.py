"""The migrate step of the process tiers: the monolith or controller brings the shared
PostgreSQL schema to head once, as the owner role, while its bots start.

Workers never migrate PostgreSQL themselves: they connect as tenant roles, which may not change
the schema (see botworker/data/tenancy.py). The owner's DSN comes from WABOT_MIGRATE_URL, is
used in a child process (Alembic stays out of the supervisor's memory; the DSN stays off every
command line) and never reaches a worker's environment (workers.FLEET_ENV_NAMES drops it).
The step runs on a thread and retries with backoff, so a database that is down at start never
holds the bots back: they wait for the schema (and answer "try again later") meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from wabot.backoff import capped_exponential
from wabot.redact import redact_dsn

log = logging.getLogger("wabot.fleet.schema")

MIGRATE_URL_ENV = "WABOT_MIGRATE_URL"
BASE_S, CAP_S = 2.0, 60.0

Migrate = Callable[[str], tuple[bool, str]]


def _run_in_child(url: str) -> tuple[bool, str]:
    from botworker.data.migrate import run_in_child

    return run_in_child(url)


class MigrateStep:
    def __init__(self, url: str, migrate: Migrate = _run_in_child,
                 base_s: float = BASE_S, cap_s: float = CAP_S) -> None:
        self.url = url
        self._migrate = migrate
        self._base_s, self._cap_s = base_s, cap_s
        self.done = threading.Event()
        self._stop = threading.Event()
        self.attempts = 0

    def run(self) -> None:
        """Migrate until it works (or stop() is called)."""
        while not self._stop.is_set():
            self.attempts += 1
            ok, reason = self._migrate(self.url)
            if ok:
                log.info("database schema migrated", extra={"db": redact_dsn(self.url)})
                self.done.set()
                return
            delay = capped_exponential(self._base_s, self._cap_s, self.attempts)
            log.warning("database migrations failed; retrying later",
                        extra={"db": redact_dsn(self.url), "error": reason,
                               "retry_in_s": round(delay)})
            self._stop.wait(delay)

    def start(self) -> MigrateStep:
        threading.Thread(target=self.run, name="db-migrate", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


def start_migrate_step(env: Mapping[str, str]) -> MigrateStep | None:
    """Start the migrate step when WABOT_MIGRATE_URL is set (a PostgreSQL owner DSN)."""
    url = (env.get(MIGRATE_URL_ENV) or "").strip()
    if not url:
        return None
    return MigrateStep(url).start()
