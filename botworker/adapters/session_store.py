"""The bot's session directory on the volume: created private, and read once at start to tell
a restarted bot (a linked device on the volume) from a new one waiting to be paired."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..config import WorkerConfig
from ..logs import get_logger

log = get_logger("worker")


def prepare_session_dir(cfg: WorkerConfig) -> None:
    """auth/{serverName}/bot_{botId}/ with mode 0700: the session keys are in there."""
    os.makedirs(cfg.session_dir, mode=0o700, exist_ok=True)
    os.chmod(cfg.session_dir, 0o700)


def has_linked_session(session_path: Path) -> bool:
    """Whether the neonize store on the volume holds a linked device: this pod is a restart of
    a bot that was paired before, not a new bot waiting to be paired.

    Read before the client first connects (neonize creates the file then, not in `NewClient`),
    read-only. whatsmeow keeps the paired device as a row of `whatsmeow_device`; a store with
    no row (a bot that was started but never paired) is not a restart. A store that exists but
    cannot be read counts as one: the worst that does is a first dial up to 20 s later.
    """
    try:
        if session_path.stat().st_size == 0:
            return False
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        db = sqlite3.connect(f"{session_path.resolve().as_uri()}?mode=ro", uri=True, timeout=2.0)
        try:
            return db.execute("SELECT 1 FROM whatsmeow_device LIMIT 1").fetchone() is not None
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.warning("cannot read the session store; treating this start as a restart",
                    extra={"error": str(exc)[:200]})
        return True
