"""A throwaway PostgreSQL server from Debian's packages: initdb + pg_ctl in a directory of ours.

It listens on 127.0.0.1 on a free port with password authentication for TCP, so the DSNs the
tests use look like the ones a worker gets from its Secret. PostgreSQL refuses to run as root,
so as root the server runs as the `postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.cluster import free_port

SUPERUSER = "wabot_admin"
SUPERUSER_PASSWORD = "wabot-test-only"  # a throwaway server bound to loopback


def _pg_bin() -> Path:
    env = os.environ.get("WABOT_PG_BIN")
    if env:
        return Path(env)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if versions:
        return versions[0].parent
    found = shutil.which("pg_ctl")
    if not found:
        raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return Path(found).resolve().parent


@dataclass
class PostgresServer:
    root: Path
    port: int = field(default_factory=free_port)
    bin_dir: Path = field(default_factory=_pg_bin)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def init(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            # The postgres user must be able to reach its directory (tmp dirs are 0700).
            for parent in self.root.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
            for p in (self.root, pwfile):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        pwfile.unlink()
        return self

    def start(self) -> PostgresServer:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER,
            password: str = SUPERUSER_PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             self.dsn(dbname), "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """A fresh database (dropped first if a previous run left it) and its DSN."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def create_owned_database(self, name: str) -> str:
        """A fresh database as production should have it: owned, with its `public` schema, by
        a LOGIN CREATEROLE role that is not a superuser (the owner/migrator role, which runs
        the migrations and provisions the tenant roles); that role's DSN. Workers must not
        connect as it: they get tenant roles (botworker.data.tenancy.provision)."""
        self.create_database(name)
        owner = f"{name[:50]}_owner"
        password = f"pw-{secrets.token_hex(8)}"
        self.psql(f'DROP ROLE IF EXISTS "{owner}"', dbname=name)
        self.psql(f"CREATE ROLE \"{owner}\" LOGIN CREATEROLE PASSWORD '{password}'",
                  dbname=name)
        self.psql(f'ALTER DATABASE "{name}" OWNER TO "{owner}"', dbname=name)
        self.psql(f'ALTER SCHEMA public OWNER TO "{owner}"', dbname=name)
        return self.dsn(name, user=owner, password=password)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.psql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        raise TimeoutError("PostgreSQL did not become ready")
