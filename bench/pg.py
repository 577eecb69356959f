"""A throwaway PostgreSQL for the benchmarks (devcluster/postgres.py), set up as production sets
it up: an owner role migrates, the worker connects as its tenant's role (row-level security
applies to it)."""

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

    def tenant_database(self, tenant: str, prefix: str = "bench") -> str:
        """A fresh database as production has it: owned by a non-superuser owner role that ran
        the migrations, and a LOGIN role made by the real `provision` for `tenant` (row-level
        security applies to it); the tenant role's DSN, which is what a worker gets."""
        from botworker.data.migrate import upgrade
        from botworker.data.tenancy import dsn_for_role, provision

        assert self.server is not None
        suffix = uuid.uuid4().hex[:8]
        owner = self.server.create_owned_database(f"{prefix}_{suffix}")
        upgrade(owner)
        role, password = f"wabot_{tenant}_{suffix}".replace("-", "_"), f"pw-{suffix}"
        provision(owner, tenant, role, password=password, set_password=True)
        return dsn_for_role(owner, role, password)

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.destroy()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
