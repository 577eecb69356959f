"""A throwaway PostgreSQL for the benchmarks (devcluster/postgres.py), with an application role
that is not a superuser (row-level security applies to it, as in production) and a migrated
schema."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from devcluster.postgres import PostgresServer


class BenchPostgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wabot-bench-pg-"))
        self.server: PostgresServer | None = None

    def start(self) -> BenchPostgres:
        self.server = PostgresServer(self.root / "pg").init().start()
        self.server.wait_ready()
        return self

    def app_database(self, prefix: str = "bench") -> str:
        """A fresh database owned by a fresh LOGIN role; returns that role's DSN."""
        import psycopg

        assert self.server is not None
        suffix = uuid.uuid4().hex[:8]
        name = f"{prefix}_{suffix}"
        admin = self.server.create_database(name)
        role, password = f"wabot_app_{suffix}", f"pw-{suffix}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            conn.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
            conn.execute(f"ALTER SCHEMA public OWNER TO {role}")
        return self.server.dsn(name, user=role, password=password)

    def migrated_database(self, prefix: str = "bench") -> str:
        from botworker.data.migrate import run_in_child

        dsn = self.app_database(prefix)
        ok, reason = run_in_child(dsn)
        if not ok:
            raise RuntimeError(f"migrations failed: {reason}")
        return dsn

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.destroy()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
