"""What the bot did lately, for its status (issue 27: the console's "in/out last hour" and its
webhook delivery state). Pure: the caller passes the clock.

- `MessageCounts`: messages received and sent over the last hour, in 60 one-minute buckets
  kept in memory. It is a view of the last hour *of this process*: nothing survives a restart
  (a new pod starts from zero; `since` says from when it counts), and it is not a replacement
  for the Prometheus counters, which are what dashboards add up.
- `DeliveryRecord`: when the bot's webhook last delivered and last failed, and why, in words
  that carry no secret (an HTTP status or "unreachable", never the URL, key or body).
- `ActivityGate`: whether a changed summary is worth a status write now. Messages never
  trigger a write: a periodic check asks the gate, so a burst of 100 messages costs at most one
  write per period, not 100.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

BUCKET_S = 60
BUCKETS = 60  # one hour


class MessageCounts:
    """Messages in and out over the last `BUCKETS` buckets of `BUCKET_S` seconds. Counting is
    one lock and two integer writes (any thread: neonize's callback thread counts what comes
    in, the pipeline and the API's threads what goes out)."""

    def __init__(self, now: float) -> None:
        self.since = now
        self._lock = threading.Lock()
        # bucket index (minute number) -> [in, out]; at most BUCKETS + 1 entries.
        self._buckets: dict[int, list[int]] = {}

    def _bucket(self, now: float) -> list[int]:
        minute = int(now // BUCKET_S)
        found = self._buckets.get(minute)
        if found is None:
            found = self._buckets[minute] = [0, 0]
            oldest = minute - BUCKETS
            for stale in [m for m in self._buckets if m <= oldest]:
                del self._buckets[stale]
        return found

    def count_in(self, now: float, n: int = 1) -> None:
        with self._lock:
            self._bucket(now)[0] += n

    def count_out(self, now: float, n: int = 1) -> None:
        with self._lock:
            self._bucket(now)[1] += n

    def last_hour(self, now: float) -> tuple[int, int]:
        """(in, out) over the buckets of the last hour, this minute's included."""
        first = int(now // BUCKET_S) - BUCKETS + 1
        with self._lock:
            counts = [c for m, c in self._buckets.items() if m >= first]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)


UNREACHABLE_REASON = "unreachable"
MAX_REASON = 64


def short_reason(detail: str) -> str:
    """A failed attempt's reason as a page may show it: "HTTP 503" as is, anything else (a
    refused connection, a timeout, an address the egress policy refuses) "unreachable"."""
    return detail if detail.startswith("HTTP ") and detail[5:].isdigit() else UNREACHABLE_REASON


@dataclass(frozen=True)
class Delivery:
    """A webhook's delivery state at one moment (times are epoch seconds)."""

    queue_depth: int
    last_delivered_at: float | None
    last_failed_at: float | None
    last_failure: str | None
    failing_since: float | None  # the first failure after the last success; None: not failing

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


class DeliveryRecord:
    """Fed by the delivery thread after each attempt; read by the status report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ok_at: float | None = None
        self._failed_at: float | None = None
        self._reason: str | None = None
        self._failing_since: float | None = None

    def delivered(self, now: float) -> None:
        with self._lock:
            self._ok_at = now
            self._failing_since = None

    def failed(self, now: float, reason: str) -> None:
        with self._lock:
            self._failed_at = now
            self._reason = reason[:MAX_REASON]
            if self._failing_since is None:
                self._failing_since = now

    def snapshot(self, queue_depth: int) -> Delivery:
        with self._lock:
            return Delivery(queue_depth, self._ok_at, self._failed_at, self._reason,
                            self._failing_since)


@dataclass(frozen=True)
class Summary:
    """What the status shows of the bot's activity; equal summaries need no new write."""

    messages_in: int
    messages_out: int
    since: float
    webhook: Delivery | None  # None: no webhook configured


class ActivityGate:
    """Decides when a changed summary is written: at most once per `period_s`, and only
    when it differs from the one last written (a quiet bot writes nothing)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._written: Summary | None = None
        self._written_at: float | None = None

    def due(self, summary: Summary, now: float) -> bool:
        if summary == self._written:
            return False
        return self._written_at is None or now - self._written_at >= self.period_s

    def written(self, summary: Summary, now: float) -> None:
        """A report carrying `summary` went out (periodic or with a state change)."""
        self._written = summary
        self._written_at = now
