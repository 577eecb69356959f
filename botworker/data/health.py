"""Whether one worker's database answered last time.

The audit writer and the command sessions of a worker share one `Health`: once either finds
the database down, both fail at once for a moment (`fail_fast`) instead of making every
command wait for a connect timeout, and the first success from either brings both back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Health:
    def __init__(self, on_change: Callable[[bool], None] | None = None,
                 retry_after_s: float = 2.0) -> None:
        self._on_change = on_change
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._down_at: float | None = None

    @property
    def up(self) -> bool:
        return self._down_at is None

    def mark(self, up: bool) -> None:
        with self._lock:
            if up:
                self._down_at = None
            elif self._down_at is None:
                self._down_at = time.monotonic()
        if self._on_change is not None:
            self._on_change(up)

    def fail_fast(self) -> bool:
        """True while the database was found down less than `retry_after_s` ago."""
        with self._lock:
            return (self._down_at is not None
                    and time.monotonic() - self._down_at < self._retry_after_s)
