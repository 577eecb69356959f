"""Audit rows: written off the message path, kept when the database is down, never lost.

The pipeline hands each row to `AuditWriter.record()` and moves on; a writer thread inserts
them. When the database cannot take them, rows go to a JSONL spool file beside the session on
the bot's volume (fsync'd), and the spool is replayed, oldest first, once the database answers
again — in this process or in the next one after a restart. Rows carry their own IDs and the
insert skips IDs already stored, so a replay interrupted half-way never duplicates.

Bounds: at most `memory_limit` rows wait in memory (the oldest spill to disk early, a batch at
a time) and the spool holds at most `spool_limit` rows; past that, new rows are dropped and counted
(wabot_messages_dropped_total{reason="audit_spool_full"}). Rows still in memory when the
process is killed with SIGKILL (at most one flush interval's worth) are the only ones at risk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..logs import get_logger
from ..metrics import Metrics

log = get_logger("audit")


class RandomIds:
    """Random (version 4) UUIDs from `os.urandom`, fetched `per_fetch` at a time.

    `uuid.uuid4()` makes a system call per ID that releases the GIL; in a busy worker, getting
    the GIL back behind the other threads cost ~20 us per audit row, a third of what auditing
    added to a command (docs/benchmarks/worker-pipeline.md). The IDs are as random as
    uuid4's. A forked child starts with an empty buffer, so parent and child never hand out
    the same IDs."""

    def __init__(self, per_fetch: int = 256) -> None:
        self._per_fetch = per_fetch
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def __call__(self) -> str:
        with self._lock:
            if self._pos >= len(self._buf):
                self._buf = os.urandom(16 * self._per_fetch)
                self._pos = 0
            chunk = self._buf[self._pos: self._pos + 16]
            self._pos += 16
        return uuid4_text(chunk)


def uuid4_text(chunk: bytes) -> str:
    """`str(uuid.UUID(bytes=chunk, version=4))`, the version and variant bits set on the bytes
    directly: 0.5 us instead of 2 (UUID's constructor checks and converts in Python), and an
    audit row makes one per command (tests/worker/test_audit_ids.py compares the two)."""
    b = bytearray(chunk)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


new_id = RandomIds()


@dataclass(frozen=True)
class AuditRecord:
    id: str
    server_name: str
    bot_id: str
    chat: str
    sender_hash: str
    command: str
    result: str
    latency_ms: int
    created_at: str

    @classmethod
    def new(
        cls,
        server_name: str,
        bot_id: str,
        chat: str,
        sender: str,
        command: str,
        result: str,
        latency_ms: int,
    ) -> AuditRecord:
        return cls(
            id=new_id(),
            server_name=server_name,
            bot_id=bot_id,
            chat=chat[:256],
            sender_hash=sender_hash(server_name, sender),
            command=command[:64],
            result=result[:32],
            latency_ms=max(0, latency_ms),
            created_at=datetime.now(UTC).isoformat(),
        )


def as_row(rec: AuditRecord) -> dict[str, Any]:
    """The record as the store and the spool take it. The fields are plain strings and ints, so
    a shallow copy is the whole copy (`dataclasses.asdict` copies recursively, ~4x slower)."""
    return dict(rec.__dict__)


def sender_hash(server_name: str, sender: str) -> str:
    """A pseudonym for the sender: stable within a tenant (abuse can be traced), not the
    phone number itself."""
    return hashlib.sha256(f"{server_name}\x00{sender}".encode()).hexdigest()


class AuditStore(Protocol):
    def insert_audit(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def ping(self) -> bool: ...


class AuditWriter:
    def __init__(
        self,
        store: Callable[[], AuditStore | None],
        spool_path: Path,
        metrics: Metrics,
        *,
        memory_limit: int = 1000,
        spool_limit: int = 100_000,
        batch: int = 500,
        flush_interval_s: float = 0.5,
        retry_interval_s: float = 2.0,
    ) -> None:
        self._store = store
        self._spool = spool_path
        self._metrics = metrics
        self._memory_limit = memory_limit
        self._spool_limit = spool_limit
        self._batch = batch
        self._flush_interval = flush_interval_s
        self._retry_interval = retry_interval_s
        self._memory: deque[AuditRecord] = deque()
        self._lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._spooled = self._count_spool()
        self._db_ok = True
        self._next_try = 0.0
        # wabot_audit_spool_rows reads `pending` when scraped: no gauge write per row.
        metrics.watch_spool(lambda: self.pending)

    # --- producer side ---------------------------------------------------------------------

    def record(self, rec: AuditRecord) -> None:
        spill: list[AuditRecord] = []
        with self._lock:
            self._memory.append(rec)
            if len(self._memory) > self._memory_limit:
                # The writer is behind: the oldest rows go to the spool a batch at a time
                # (one fsync per batch; one per command held the message path on the disk).
                n = max(len(self._memory) - self._memory_limit,
                        min(self._batch, self._memory_limit))
                spill = [self._memory.popleft() for _ in range(n)]
        if spill:
            self._append_spool(spill)
        if not self._wake.is_set():  # set() takes the event's lock even when already set
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._memory) + self._spooled

    # --- the writer thread -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("audit flush failed")

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop the thread; whatever the database does not take now goes to the spool."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._next_try = 0.0
        try:
            self.flush()
        except Exception:
            log.exception("final audit flush failed")
        self._spill_memory()

    def flush(self) -> None:
        """Spool first (older rows), then memory. Returns quietly when the database is down."""
        if self.pending == 0:
            return  # nothing to write: do not even load the database layer
        if not self._db_ok and time.monotonic() < self._next_try:
            self._spill_memory()
            return
        store = self._store()
        if store is None:
            # No schema yet (migrations still running, or failing): keep rows safe on disk.
            self._spill_memory()
            self._next_try = time.monotonic() + self._retry_interval
            return
        if not self._db_ok and not store.ping():
            self._spill_memory()
            self._down()
            return
        if self._spooled and not self._replay_spool(store):
            self._spill_memory()
            return
        while True:
            with self._lock:
                batch = [self._memory.popleft() for _ in range(min(self._batch, len(self._memory)))]
            if not batch:
                break
            if not self._insert(store, [as_row(r) for r in batch]):
                self._append_spool(batch)
                self._spill_memory()
                return

    def _insert(self, store: AuditStore, rows: list[dict[str, Any]]) -> bool:
        from ..core.context import DatabaseUnavailable

        try:
            store.insert_audit(rows)
        except DatabaseUnavailable:
            self._down()
            return False
        except Exception as exc:
            # Not an outage (e.g. schema missing): keep the rows and retry later all the same.
            log.warning("audit insert failed", extra={"error": str(exc)[:300]})
            self._down()
            return False
        if not self._db_ok:
            log.info("database is back; writing audit rows")
        self._db_ok = True
        self._metrics.db_up(True)
        return True

    def _down(self) -> None:
        if self._db_ok:
            log.warning("database unavailable; spooling audit rows to disk")
        self._db_ok = False
        self._next_try = time.monotonic() + self._retry_interval
        self._metrics.db_up(False)

    def _spill_memory(self) -> None:
        with self._lock:
            rows = list(self._memory)
            self._memory.clear()
        if rows:
            self._append_spool(rows)

    # --- the spool file ---------------------------------------------------------------------

    def _count_spool(self) -> int:
        try:
            with self._spool.open("rb") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    def _append_spool(self, rows: list[AuditRecord]) -> None:
        with self._file_lock:
            room = self._spool_limit - self._spooled
            keep, lost = rows[: max(0, room)], len(rows) - max(0, room)
            if keep:
                self._spool.parent.mkdir(parents=True, exist_ok=True)
                with self._spool.open("a", encoding="utf-8") as f:
                    for r in keep:
                        f.write(json.dumps(as_row(r), ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                with self._lock:
                    self._spooled += len(keep)
            for _ in range(lost):
                self._metrics.dropped("audit_spool_full")

    def _replay_spool(self, store: AuditStore) -> bool:
        """Insert the spool's rows in order; on failure keep the rest for next time."""
        with self._file_lock:
            try:
                f = self._spool.open("r", encoding="utf-8")
            except FileNotFoundError:
                with self._lock:
                    self._spooled = 0
                return True
            with f:
                batch: list[dict[str, Any]] = []
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        batch.append(json.loads(line))
                    except json.JSONDecodeError:
                        log.warning("skipping a corrupt audit spool line")
                        continue
                    if len(batch) >= self._batch:
                        if not self._insert(store, batch):
                            return self._keep_from(f, batch)
                        batch = []
                if batch and not self._insert(store, batch):
                    return self._keep_from(f, batch)
            self._spool.unlink(missing_ok=True)
            with self._lock:
                self._spooled = 0
            log.info("audit spool replayed into the database")
        return True

    def _keep_from(self, f: Any, unsent: list[dict[str, Any]]) -> bool:
        """Rewrite the spool as `unsent` plus the unread rest of `f` (atomically)."""
        tmp = self._spool.with_suffix(".tmp")
        count = 0
        with tmp.open("w", encoding="utf-8") as out:
            for row in unsent:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            for line in f:
                if line.strip():
                    out.write(line if line.endswith("\n") else line + "\n")
                    count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._spool)
        with self._lock:
            self._spooled = count
        return False
