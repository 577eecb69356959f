"""Schema migrations (Alembic), run by the worker at start in a child process.

A child process, because Alembic and its templating add ~10 MB that the long-running worker
would keep for its whole life after using them once. The DSN travels in the child's
environment (never on its command line, where `ps` shows it), and the child prints at most one
line, without the DSN, when it fails.

    python -m botworker.data.migrate      # upgrades $WABOT_MIGRATE_URL (or $DATABASE_URL)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..config import redact_dsn

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
URL_ENV = "WABOT_MIGRATE_URL"


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`, in this process."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    command.upgrade(cfg, revision)


def run_in_child(url: str, timeout_s: float = 120.0) -> tuple[bool, str]:
    """Upgrade to head in a child process; (ok, one-line reason when not ok)."""
    env = {**os.environ, URL_ENV: url}
    env.pop("DATABASE_URL", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "botworker.data.migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"migrations did not finish within {timeout_s:.0f} s"
    if proc.returncode == 0:
        return True, ""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    reason = lines[-1] if lines else f"exit code {proc.returncode}"
    return False, reason.replace(url, redact_dsn(url))[:500]


def main() -> int:
    url = os.environ.get(URL_ENV) or os.environ.get("DATABASE_URL")
    if not url:
        print("migrate: set WABOT_MIGRATE_URL or DATABASE_URL", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING)
    try:
        upgrade(url)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        msg = f"{exc.__class__.__name__}: {first}".replace(url, redact_dsn(url))
        print(f"migrate: {msg[:400]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
