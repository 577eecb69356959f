"""Incoming media, as spec.media says: describe it, or download, check and keep it.

The download is neonize's `download_any` (whatsmeow fetches the encrypted copy, checks its
hashes and decrypts it): the one call that reaches WhatsApp, and the tests' one seam. The file
is then checked against what the message declared (core/media_check.py) and kept on the bot's
volume (adapters/media_store.py). Every outcome is a `media.status` the tenant sees, a metric,
and never an exception: a file that cannot be had still leaves the message deliverable.

Nothing media-specific is imported at module level: an idle bot carries no media code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wabot.spec_view import MediaSpec

from ..adapters.media_store import MediaStore, StoredMedia
from ..core import media_check
from ..logs import get_logger
from ..metrics import Metrics

if TYPE_CHECKING:  # the event data it is given (wabot/event_view.py)
    from wabot.event_view import MediaData, MessageData

log = get_logger("media")

Download = Callable[[Any], bytes]


class MediaIntake:
    def __init__(self, download: Download, store: MediaStore, metrics: Metrics,
                 url_for: Callable[[str], str]) -> None:
        self._download = download
        self.store = store
        self._metrics = metrics
        self._url_for = url_for

    def describe(self, data: MessageData, content: Any, spec: MediaSpec) -> MessageData:
        """`data` with its media described as spec.media.download says, downloaded if "full"."""
        if data.media is None:
            return data
        if spec.download == "none":
            return replace(data, media=None)
        if spec.download == "metadata":
            return data
        media = self._fetch(data, content, spec)
        self._metrics.media("refused" if media.status == "refused" else media.status)
        return replace(data, media=media)

    def _fetch(self, data: MessageData, content: Any, spec: MediaSpec) -> MediaData:
        declared = data.media
        assert declared is not None
        if declared.size is not None and declared.size > spec.max_bytes:
            return _with(declared, "too_large", "declared_size_over_max_bytes")
        try:
            blob = self._download(content)
        except Exception as exc:  # DownloadError, an expired URL, a dead socket: all alike
            log.warning("media download failed", extra={"error_type": type(exc).__name__,
                                                        "message_id": data.message_id})
            return _with(declared, "failed", "download_failed")
        if not isinstance(blob, bytes | bytearray):
            return _with(declared, "failed", "download_failed")
        reason = media_check.refusal(
            bytes(blob), message_type=data.type, mimetype=declared.mimetype,
            declared_size=declared.size, declared_sha256=declared.sha256,
            max_bytes=spec.max_bytes)
        if reason == "too_large":
            return _with(declared, "too_large", "over_max_bytes")
        if reason is not None:
            log.warning("media refused", extra={"reason": reason, "message_id": data.message_id})
            return _with(declared, "refused", reason)
        stored = self.store.put(
            bytes(blob), mimetype=declared.mimetype or "application/octet-stream",
            file_name=declared.file_name, sha256=_sha256(blob), chat=data.chat,
            message_id=data.message_id, quota_bytes=spec.quota_bytes,
            retention_s=spec.retention_hours * 3600.0)
        if isinstance(stored, StoredMedia):
            return replace(declared, status="stored", id=stored.id,
                           url=self._url_for(stored.id))
        if stored == "too_large":
            return _with(declared, "too_large", "over_quota_bytes")
        if stored == "no_space":
            return _with(declared, "no_space", self.store.usage().reason or "no_space")
        return _with(declared, "failed", "write_failed")


def _with(media: MediaData, status: str, error: str) -> MediaData:
    return replace(media, status=status, error=error)  # type: ignore[arg-type]


def _sha256(blob: bytes | bytearray) -> str:
    return hashlib.sha256(blob).hexdigest()
