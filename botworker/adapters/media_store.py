"""Received media on the bot's own volume: `{session_dir}/media/`, one file per download and
a small JSON sidecar describing it, under a byte quota and a retention period.

The volume also holds the WhatsApp session and the worker's state file, so media must never
fill it: a write is refused (not attempted) when the quota cannot be met by dropping older
files, and when the volume would keep less than `reserve_bytes` free. A refused write makes
the store `full` (the worker reports it as a degraded condition) and the message is still
delivered, without its file; the session is never at risk. Files are written to a temporary
name, fsync'd and renamed, so a crash leaves either the whole file or none.

Ids are random (not the message id): the URL of one file says nothing about another's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..logs import get_logger

log = get_logger("media")

ID_PATTERN = r"[A-Za-z0-9_-]{22}"
_ID_RE = re.compile(ID_PATTERN)
DEFAULT_RESERVE = 32 * 1024 * 1024


@dataclass(frozen=True)
class StoredMedia:
    id: str
    size: int
    mimetype: str
    file_name: str | None
    sha256: str
    created: float
    chat: str
    message_id: str


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int
    quota_bytes: int
    full: bool
    reason: str | None  # QuotaFull, VolumeFull, WriteFailed


class MediaStore:
    def __init__(self, root: Path, *, reserve_bytes: int = DEFAULT_RESERVE,
                 clock: Callable[[], float] = time.time,
                 free_bytes: Callable[[Path], int] | None = None) -> None:
        self.root = root
        self._reserve = reserve_bytes
        self._clock = clock
        self._free = free_bytes or _free_bytes
        self._lock = threading.Lock()
        self._quota = 0
        self._full_reason: str | None = None
        # id -> file, read from the sidecars once (a restart keeps what the volume holds),
        # then kept in step with every write and delete: no directory scan per message.
        self._index: dict[str, StoredMedia] | None = None

    # --- writing --------------------------------------------------------------------------

    def put(self, data: bytes, *, mimetype: str, file_name: str | None, sha256: str, chat: str,
            message_id: str, quota_bytes: int, retention_s: float) -> StoredMedia | str:
        """Keep `data`; the stored file, or why not ("no_space", "too_large", "failed")."""
        with self._lock:
            self._quota = quota_bytes
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self._expire(retention_s)
                if len(data) > quota_bytes:
                    return "too_large"
                if not self._make_room(len(data), quota_bytes):
                    return self._refuse("QuotaFull")
                if self._free(self.root) - len(data) < self._reserve:
                    return self._refuse("VolumeFull")
                item = StoredMedia(secrets.token_urlsafe(16), len(data), mimetype, file_name,
                                   sha256, self._clock(), chat, message_id)
                self._write(item, data)
            except OSError as exc:
                log.warning("could not store a media file",
                            extra={"error_type": type(exc).__name__, "errno": exc.errno})
                return self._refuse("VolumeFull" if exc.errno == 28 else "WriteFailed",
                                    "no_space" if exc.errno == 28 else "failed")
            self._full_reason = None
            return item

    def _refuse(self, reason: str, answer: str = "no_space") -> str:
        if self._full_reason != reason:
            log.warning("media storage is full; files are not kept",
                        extra={"reason": reason})
        self._full_reason = reason
        return answer

    def _write(self, item: StoredMedia, data: bytes) -> None:
        tmp = self.root / f".{item.id}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            meta = self.root / f"{item.id}.json"
            meta.write_text(json.dumps(asdict(item)))
            os.replace(tmp, self.root / f"{item.id}.bin")
            self._all()[item.id] = item
        except OSError:
            for leftover in (tmp, self.root / f"{item.id}.json"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise

    def _make_room(self, size: int, quota: int) -> bool:
        """Drop the oldest files until `size` more fits under the quota."""
        items = sorted(self._items(), key=lambda it: it.created)
        used = sum(it.size for it in items)
        while items and used + size > quota:
            oldest = items.pop(0)
            self._delete(oldest.id)
            used -= oldest.size
        return used + size <= quota

    def _expire(self, retention_s: float) -> int:
        cutoff = self._clock() - retention_s
        gone = 0
        for it in self._items():
            if it.created < cutoff:
                self._delete(it.id)
                gone += 1
        return gone

    def expire(self, retention_s: float) -> int:
        """Delete the files older than the retention period (also done before each write)."""
        with self._lock:
            try:
                return self._expire(retention_s)
            except OSError:
                return 0

    # --- reading --------------------------------------------------------------------------

    def get(self, media_id: str) -> tuple[StoredMedia, bytes] | None:
        """The file and its description; None for an unknown or malformed id."""
        if not _ID_RE.fullmatch(media_id):
            return None
        try:
            meta = json.loads((self.root / f"{media_id}.json").read_text())
            data = (self.root / f"{media_id}.bin").read_bytes()
            return StoredMedia(**meta), data
        except (OSError, ValueError, TypeError):
            return None

    def usage(self) -> Usage:
        with self._lock:
            items = self._items()
            return Usage(sum(it.size for it in items), len(items), self._quota,
                         self._full_reason is not None, self._full_reason)

    def _items(self) -> list[StoredMedia]:
        return list(self._all().values())

    def _all(self) -> dict[str, StoredMedia]:
        if self._index is None:
            self._index = {}
            for meta in (self.root.glob("*.json") if self.root.is_dir() else ()):
                try:
                    item = StoredMedia(**json.loads(meta.read_text()))
                except (OSError, ValueError, TypeError):
                    continue  # half-written or foreign: not ours to count
                if (self.root / f"{item.id}.bin").exists():
                    self._index[item.id] = item
        return self._index

    def _delete(self, media_id: str) -> None:
        self._all().pop(media_id, None)
        for suffix in (".bin", ".json"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{media_id}{suffix}").unlink()


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
