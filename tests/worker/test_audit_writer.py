"""AuditWriter when its writer falls behind: rows move to the disk spool a batch at a time, and
every row reaches the database once, oldest first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botworker.adapters.audit_writer import AuditRecord, AuditWriter
from botworker.metrics import Metrics


class ListStore:
    """The AuditStore protocol over a list (what the database would hold, in insert order)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def insert_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def ping(self) -> bool:
        return True


def _record(i: int) -> AuditRecord:
    return AuditRecord.new(server_name="acme", bot_id="1", chat=f"chat{i}@s.whatsapp.net",
                           sender="123@s.whatsapp.net", command="ping", result="ok",
                           latency_ms=i)


def _spool_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def test_a_backlog_spills_a_batch_per_disk_write_and_loses_nothing(tmp_path: Path) -> None:
    store = ListStore()
    spool = tmp_path / "audit.spool.jsonl"
    # The writer thread is not started: it is "behind" until flush() is called.
    writer = AuditWriter(lambda: store, spool, Metrics("1", "acme"), memory_limit=10, batch=4)
    records = [_record(i) for i in range(25)]
    writes: list[int] = []
    for i, rec in enumerate(records):
        writer.record(rec)
        if spool.exists() and (not writes or _spool_lines(spool) != writes[-1]):
            writes.append(_spool_lines(spool))
        assert writer.pending == i + 1
    # 25 rows through a 10-row memory: the 11th, 15th, 19th and 23rd each moved the 4 oldest
    # rows to the spool (one append and fsync each), not one row per command from the 11th on.
    assert writes == [4, 8, 12, 16]

    writer.flush()
    assert [r["id"] for r in store.rows] == [r.id for r in records]  # every row, in order
    assert writer.pending == 0
