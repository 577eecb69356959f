"""Where an outgoing message's file comes from, and the check it passes before anything is
sent: a URL is fetched under the egress policy (adapters/media_fetch.py), an upload is taken
as given; either way the bytes are checked against WhatsApp's limits for the kind
(core/outgoing.py: size, and the type the bytes are, whatever was declared).

At most `concurrency` files are fetched, checked and built at once per worker: each is held in
memory several times over while neonize thumbnails, encrypts and uploads it, and ffmpeg runs
for video and audio. A send beyond that waits up to `wait_s`, then is refused (503, retry).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..adapters.media_fetch import Fetcher
from ..core.outgoing import DEFAULT_RULES, InvalidContent, MediaRule, Outgoing, check_media


class MediaBusy(RuntimeError):
    """Too many media sends in progress in this worker."""


class MediaSource:
    def __init__(self, fetcher: Fetcher | None = None,
                 rules: dict[str, MediaRule] | None = None, *, concurrency: int = 2,
                 wait_s: float = 30.0) -> None:
        self.fetcher = fetcher or Fetcher()
        self.rules = dict(rules or DEFAULT_RULES)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._wait_s = wait_s

    def max_bytes(self) -> int:
        """The largest file any kind takes (the upload route's body limit follows it)."""
        return max(rule.max_bytes for rule in self.rules.values())

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise MediaBusy("too many media messages are being sent by this bot right now")
        try:
            yield
        finally:
            self._slots.release()

    def prepare(self, out: Outgoing) -> Outgoing:
        """`out` with its file's bytes, checked; InvalidContent naming the field otherwise.
        A file already there (an upload, a plugin's bytes) is checked as it is."""
        media = out.media
        if media is None or out.kind not in self.rules:
            return out
        rule = self.rules[out.kind]
        if out.data is not None:
            field = out.extra.get("field", "file")
            # What the JSON says wins over the part's own headers (curl sends its guesses).
            mimetype = check_media(out.kind, field, out.data, media.mimetype or out.mimetype,
                                   self.rules)
            return out.with_file(out.data, mimetype, _name(media.file_name or out.file_name))
        if media.url is None:
            raise InvalidContent(out.kind, "no file: give `url` or upload one")
        from ..adapters.media_fetch import FetchFailed

        field = f"{out.kind}.url"
        try:
            got = self.fetcher.get(media.url, rule.max_bytes)
        except FetchFailed as exc:
            raise InvalidContent(field, str(exc)) from None
        declared = media.mimetype
        if declared is None and out.kind == "document" and got.content_type:
            declared = got.content_type.split(";")[0].strip().lower() or None
        mimetype = check_media(out.kind, field, got.data, declared, self.rules)
        return out.with_file(got.data, mimetype, _name(media.file_name or got.file_name))


def _name(name: str | None) -> str | None:
    """A file name as the recipient sees it: no directories, no control characters."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:255]
    return name or None
