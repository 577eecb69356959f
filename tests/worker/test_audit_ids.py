"""Audit row IDs: the database skips an ID it already holds (that is what makes a spool replay
safe), so two rows must never share one, in one process or across a fork."""

from __future__ import annotations

import os
import uuid

from botworker.adapters.audit_writer import AuditRecord, RandomIds, uuid4_text


def test_ids_are_distinct_random_uuid4_across_many_fetches() -> None:
    ids = RandomIds(per_fetch=8)
    got = [ids() for _ in range(10_000)]
    assert len(set(got)) == len(got)
    parsed = [uuid.UUID(i) for i in got]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(str(u) == i for u, i in zip(parsed, got, strict=True))


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    ids = RandomIds(per_fetch=256)
    ids()  # the buffer now holds 255 more IDs the parent will hand out
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next IDs, then leave without running pytest's teardown
        try:
            os.write(write, "\n".join(ids() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    parent = {ids() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent


def test_every_record_gets_its_own_id() -> None:
    rows = [AuditRecord.new("acme", "b1", "c@g.us", "s@s.whatsapp.net", "ping", "ok", 1)
            for _ in range(1000)]
    assert len({r.id for r in rows}) == 1000


def test_the_id_text_is_what_uuid_writes_for_the_same_bytes() -> None:
    """uuid4_text sets the version and variant bits itself (faster than uuid.UUID): the same
    text as uuid.UUID(bytes=..., version=4) for any 16 bytes, the bits it overwrites included."""
    chunks = [bytes(16), b"\xff" * 16, bytes(range(16)), *(os.urandom(16) for _ in range(5000))]
    for chunk in chunks:
        assert uuid4_text(chunk) == str(uuid.UUID(bytes=chunk, version=4))
