"""What one import or one first use adds to a worker's memory, on top of what every worker loads
anyway (`neonize.client` and `botworker.worker`): the figures of docs/benchmarks/worker-memory.md.

    python -m bench.rss_cost                          # the database layer's parts
    python -m bench.rss_cost --dsn postgresql://...   # and the PostgreSQL ones
    python -m bench.rss_cost "import yaml" ...        # any statements

Each statement runs in a fresh interpreter of its own, so one cost never hides in another's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from bench.common import REPO

_PROBE = """
import re, sys
def rss(): return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1]) / 1024
import neonize.client, botworker.worker
before = rss()
exec(sys.argv[1])
print(f"{rss() - before:+6.1f} MiB")
"""

_SQL = ("c.execute({0}('create table if not exists t (x)')); "
        "c.execute({0}('insert into t values (1)')); c.commit()")


def default_statements(db_dir: str, dsn: str | None) -> list[tuple[str, str]]:
    """(label, statement): how audit rows were written (SQLAlchemy) and are written now."""
    rows = [
        ("import sqlalchemy", "import sqlalchemy"),
        ("import psycopg", "import psycopg"),
        ("SQLAlchemy engine on SQLite + one insert",
         f"import sqlalchemy as sa; c = sa.create_engine('sqlite:///{db_dir}/a.db').connect(); "
         + _SQL.format("sa.text")),
        ("sqlite3.connect + one insert",
         f"import sqlite3; c = sqlite3.connect('{db_dir}/b.db'); " + _SQL.format("")),
    ]
    if dsn:
        rows += [
            ("SQLAlchemy engine on PostgreSQL + SELECT 1",
             "import os, sqlalchemy as sa; c = sa.create_engine(os.environ['RSS_COST_DSN']"
             ".replace('postgresql://', 'postgresql+psycopg://', 1)).connect(); "
             "c.execute(sa.text('SELECT 1'))"),
            ("psycopg.connect + SELECT 1",
             "import os, psycopg; c = psycopg.connect(os.environ['RSS_COST_DSN']); "
             "c.execute('SELECT 1')"),
        ]
    return rows


def measure(statement: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", _PROBE, statement], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return proc.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("statements", nargs="*", help="Python statements (default: the "
                        "database layer's parts)")
    parser.add_argument("--dsn", help="a PostgreSQL DSN for the PostgreSQL rows")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if args.dsn:
        env["RSS_COST_DSN"] = args.dsn
    with tempfile.TemporaryDirectory() as db_dir:
        rows = ([(s, s) for s in args.statements] if args.statements
                else default_statements(db_dir, args.dsn))
        for label, statement in rows:
            print(f"{measure(statement, env):>12}  {label}")


if __name__ == "__main__":
    main()
