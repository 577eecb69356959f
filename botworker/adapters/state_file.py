"""The worker's own durable state: one SQLite file beside the session (`worker-state.sqlite3`).

It holds what must survive a restart but belongs to this bot alone and must not depend on the
tenant database being up: the webhook outbox, the send API's idempotency keys and the chats
the bot has greeted. On the bot's auth volume, so it survives pod replacement and moves with
the session (`fleet migrate`). stdlib sqlite3 only (no SQLAlchemy in the worker's idle memory),
WAL so the threads that use it (pipeline, webhook delivery, HTTP) rarely wait on each other,
and synchronous=FULL: a row that is committed is on disk.

Each user opens its own connection (sqlite3 connections are not shared between threads here).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    status INTEGER,
    body TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS api_idempotency_created ON api_idempotency (created);
CREATE TABLE IF NOT EXISTS greeted_chats (
    chat TEXT PRIMARY KEY,
    greeted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS greeted_chats_at ON greeted_chats (greeted_at);
"""

_init_lock = threading.Lock()


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the schema in place; the file is created (mode 0600) if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    with _init_lock:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA)
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class StateStore:
    """A store in the state file: its own connection, opened on first use (a worker that never
    greets or never gets an API request opens nothing), used under the store's lock, since
    the pipeline, webhook and HTTP threads may all call one store."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        """The connection; call with the lock held."""
        if self._conn is None:
            self._conn = connect(self._path)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class GreetedChats(StateStore):
    """Chats the bot has sent settings.welcomeText to: bounded (the oldest forgotten first;
    forgetting can only mean a chat silent for a very long time is greeted once more)."""

    def __init__(self, path: Path, limit: int = 100_000) -> None:
        super().__init__(path)
        self._limit = limit

    def greeted(self, chat: str) -> bool:
        with self._lock:
            row = self._db().execute(
                "SELECT 1 FROM greeted_chats WHERE chat = ?", (chat,)
            ).fetchone()
            return row is not None

    def remember(self, chat: str) -> None:
        with self._lock:
            db = self._db()
            db.execute("INSERT OR IGNORE INTO greeted_chats (chat, greeted_at) VALUES (?, ?)",
                       (chat, time.time()))
            (count,) = db.execute("SELECT COUNT(*) FROM greeted_chats").fetchone()
            if count > self._limit:
                db.execute(
                    "DELETE FROM greeted_chats WHERE chat IN (SELECT chat FROM greeted_chats "
                    "ORDER BY greeted_at LIMIT ?)", (count - self._limit,))
