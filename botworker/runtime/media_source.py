"""Where an outgoing message's file comes from, and the check it passes before anything is
sent: a URL is fetched under the egress policy (adapters/media_fetch.py), an upload is taken
as given; either way the bytes are checked against WhatsApp's limits for the kind
(core/outgoing.py: size, and the type the bytes are, whatever was declared).

Files are fetched, checked and built within a memory budget per worker (`budget_bytes`, by
default 48 MiB of files at once: one 32 MiB document, or three 16 MiB videos): each is held
about three times while it is sent (the worker's one copy, then neonize hands it to Go, where
whatsmeow copies and encrypts it: a 32 MiB document takes the worker's cgroup ~99 MiB above
idle, 48 MiB of files at once ~150 MiB: `python -m bench.upload_peak`), and ffmpeg runs for
video and audio. The bot's default memory limit (240Mi) is sized for this budget. A send
beyond the budget waits up to `wait_s`, then is refused (503, retry).
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
                 rules: dict[str, MediaRule] | None = None, *,
                 budget_bytes: int = 48 * 1024 * 1024, wait_s: float = 30.0) -> None:
        self.fetcher = fetcher or Fetcher()
        self.rules = dict(rules or DEFAULT_RULES)
        self._budget = budget_bytes
        self._in_flight = 0
        self._changed = threading.Condition()
        self._wait_s = wait_s

    def max_bytes(self) -> int:
        """The largest file any kind takes (the upload route's body limit follows it)."""
        return max(rule.max_bytes for rule in self.rules.values())

    @contextmanager
    def slot(self, out: Outgoing) -> Iterator[None]:
        """Room for `out`'s file in the budget (its size, or its kind's limit before a URL is
        fetched), for as long as it is being sent."""
        rule = self.rules.get(out.kind)
        size = len(out.data) if out.data is not None else (rule.max_bytes if rule else 0)
        size = min(size, self._budget)
        with self._changed:
            if not self._changed.wait_for(lambda: self._in_flight + size <= self._budget,
                                          timeout=self._wait_s):
                raise MediaBusy("too many media messages are being sent by this bot right "
                                "now")
            self._in_flight += size
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= size
                self._changed.notify_all()

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
