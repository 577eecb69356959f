"""Session control on the bot's volume: the record of the last session action (what makes an
annotation act exactly once, across restarts of the worker), and wiping the session store.

The record is written before an action is carried out and again with its outcome, so a worker
that dies in between finds "Started" on its next start and finishes what must be finished (a
logout's wipe) instead of acting a second time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wabot.specread import dump, read
from wabot.status_view import SessionActionStatus

from ..logs import get_logger

log = get_logger("session")

RECORD_FILE = "session-action.json"
# The neonize (whatsmeow) store and SQLite's companions of it.
_STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def record_path(session_dir: Path) -> Path:
    return session_dir / RECORD_FILE


def load_record(path: Path) -> SessionActionStatus | None:
    try:
        return read(SessionActionStatus, json.loads(path.read_bytes()), str(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # JSON and SpecError are ValueErrors
        log.warning("ignoring an unreadable session action record",
                    extra={"error": str(exc)[:200]})
        return None


def save_record(path: Path, record: SessionActionStatus) -> None:
    """Atomically (write, fsync, rename): a crash leaves the old record or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(dump(record)).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def wipe_session(session_path: Path) -> list[str]:
    """Delete the session store (the linked device's keys) from the volume; the names of the
    files removed. The worker's other state (greeted chats, idempotency keys, spool) stays."""
    removed = []
    for suffix in _STORE_SUFFIXES:
        f = session_path.with_name(session_path.name + suffix)
        try:
            f.unlink()
        except FileNotFoundError:
            continue
        removed.append(f.name)
    return removed
