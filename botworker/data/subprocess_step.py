"""Run one database step of the worker in a short-lived child process.

A worker needs Alembic once (to migrate its SQLite file) and, on PostgreSQL, SQLAlchemy and
psycopg once at start (to check its role, see rolecheck.py). Imported into the worker, each
would stay in its memory for its whole life after one use: ~10 MB for Alembic, ~26 MiB for
SQLAlchemy, psycopg and the check's connection pool, of a budget under 90 MB per bot. A child
that exits gives it all back. A worker that never writes to its database (no audit rows, no
database commands) then never loads a database driver at all.

The DSN reaches the child in its environment, never on its command line (where `ps` and
/proc/<pid>/cmdline show it to anyone on the node), and what the child prints is passed on
only scrubbed of the DSN and every secret part of it (wabot.redact: its password as written
and decoded, secret query values, or, for a DSN that cannot be read, the whole of it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from wabot.redact import redact_dsn, scrub, secrets_of


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None  # None: the child did not finish in time (it was killed)
    stdout: str  # what the child printed (redacted)
    reason: str  # the child's last stderr line (redacted), or why it did not finish


def redact(text: str, url: str) -> str:
    """`text` with the DSN shown redacted where it occurs whole, and any secret of it
    scrubbed wherever else it occurs."""
    return scrub(text.replace(url, redact_dsn(url)) if url else text, secrets_of(url, "dsn"))


def one_line(exc: BaseException, url: str, limit: int = 400) -> str:
    """`Class: first line` of an error, redacted: the one stderr line a child prints."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return redact(f"{exc.__class__.__name__}: {lines[0] if lines else ''}", url)[:limit]


def run_module(module: str, args: Sequence[str], url: str, url_env: str,
               timeout_s: float) -> ChildResult:
    """`python -m module *args` with `url` in the variable `url_env` (and no DATABASE_URL)."""
    env = {**os.environ, url_env: url}
    if url_env != "DATABASE_URL":
        env.pop("DATABASE_URL", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ChildResult(None, "", f"did not finish within {timeout_s:.0f} s")
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    reason = lines[-1] if lines else ("" if proc.returncode == 0
                                      else f"exit code {proc.returncode}")
    return ChildResult(proc.returncode, redact(proc.stdout, url), redact(reason, url)[:500])
