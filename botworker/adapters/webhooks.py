"""Signed webhook deliveries (spec.webhook): durable, retried, off every hot path.

Producers (the pipeline thread for `message`/`command`, the connection thread for
`connection`/`pairing`) call `emit()`, which only builds the payload and appends it to a
bounded in-memory list: never I/O, never a wait. Two threads of this module do the rest:

- the *outbox* thread writes new events to the `webhook_outbox` table of the worker's state
  file (state.py; one transaction per batch, fsync'd), so an event survives a restart from the
  moment it is written, and enforces the bound: past `queue_max` events the oldest are dropped
  and counted (`wabot_webhook_deliveries_total{result="dropped"}`);
- the *delivery* thread posts the oldest event, one at a time, in order. 2xx removes it;
  anything else (a refused connection, a timeout, a 5xx, a 4xx) keeps it and schedules a retry
  with capped exponential backoff and full jitter (`retried`). An event older than
  `max_age_s` is given up (`failed`, logged with its delivery id). A slow receiver therefore
  delays only later deliveries, never a message or a command.

Every attempt is signed (README, "Receiving webhooks"): the body is fixed when the event is
made, so a retry carries the same body and the same `X-Wabot-Delivery` id (receivers dedupe by
it: delivery is at least once), and a fresh `X-Wabot-Timestamp` + `X-Wabot-Signature`
(HMAC-SHA256 of "{timestamp}.{body}" with the bot's key). The key is never logged.

Only events that are still in memory when the process dies by SIGKILL (milliseconds' worth:
the outbox thread writes as soon as it is woken) can be lost; SIGTERM writes them first.

Where a delivery may go, and how one attempt is made, is `webhook_post`.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wabot.egress import (
    EgressPolicy,
    Resolver,
    check,
    system_resolver,
)
from wabot.redact import url_origin
from wabot.spec_view import WebhookSpec
from wabot.webhook_signing import sign
from wabot.workerenv import ALLOW_CIDRS_ENV, ALLOW_HOSTS_ENV

from ..core.activity import Delivery, DeliveryRecord, short_reason
from ..core.backoff import BackoffPolicy
from ..core.webhook_body import payload_body
from ..logs import get_logger
from ..metrics import Metrics
from .state_file import connect
from .webhook_post import USER_AGENT, Attempt, Poster, post

log = get_logger("webhooks")

@dataclass(frozen=True)
class WebhookSettings:
    timeout_s: float = 10.0
    queue_max: int = 10_000
    max_age_s: float = 86_400.0
    backoff: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base_s=1.0,
                                                                         cap_s=300.0))
    batch: int = 500
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    resolver: Resolver = system_resolver



class WebhookDispatcher:
    def __init__(
        self,
        state_path: Any,
        metrics: Metrics,
        *,
        bot: str,
        server_name: str,
        target: Callable[[], WebhookSpec | None],
        secret: bytes | None,
        settings: WebhookSettings | None = None,
        poster: Poster | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._path = state_path
        self._metrics = metrics
        self._bot = bot
        self._server_name = server_name
        self._target = target
        self._secret = secret
        self._settings = settings or WebhookSettings()
        self._post = poster or self._post_with_policy
        self._explained: set[tuple[str, str]] = set()
        self._clock = clock
        self._rand = rand
        self._incoming: deque[tuple[str, str, bytes, float]] = deque()
        self._lock = threading.Lock()
        # Serialises the two threads' writes with their row counts, so `depth` is exact.
        self._db_lock = threading.Lock()
        self._wake_outbox = threading.Event()
        self._wake_delivery = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stored = 0
        self._writing = False
        self._warned_no_key = False
        self._started = False
        self._record = DeliveryRecord()

    # --- producers (any thread; never blocks, never raises) ---------------------------------

    def wants(self, event: str) -> bool:
        spec = self._target()
        return spec is not None and event in spec.events

    def emit(self, event: str, data: Any) -> str | None:
        """Queue one event if the bot's spec asks for it; returns its delivery id. `data` is
        the event's class of wabot/event_view.py (the worker loads no pydantic for it); the
        body is what wabot.events.WebhookPayload writes (tests/contract/test_event_view.py)."""
        try:
            if not self.wants(event):
                return None
            delivery_id = uuid.uuid4().hex
            body = payload_body(delivery_id, event, data, bot=self._bot,
                                server_name=self._server_name, created_at=datetime.now(UTC))
            dropped = 0
            with self._lock:
                self._incoming.append((delivery_id, event, body, self._clock()))
                # The in-memory part is bounded too (a stuck disk must not grow memory).
                while len(self._incoming) > self._settings.queue_max:
                    self._incoming.popleft()
                    dropped += 1
            for _ in range(dropped):
                self._metrics.webhook("dropped")
            self._publish_depth()
            self._wake_outbox.set()
            return delivery_id
        except Exception:
            log.exception("could not queue a webhook event", extra={"event": event})
            return None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        log.info("webhook egress policy: public addresses, and the admin's exceptions",
                 extra=self._settings.egress.describe())
        conn = connect(self._path)
        try:
            (self._stored,) = conn.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()
        finally:
            conn.close()
        if self._stored:
            log.info("webhook events from before the restart are queued",
                     extra={"count": self._stored})
        self._publish_depth()
        for target, name in ((self._run_outbox, "webhook-outbox"),
                             (self._run_delivery, "webhook-delivery")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Write what is still in memory, then stop (an attempt in flight is abandoned: the
        event stays queued and is delivered again by the next process)."""
        self._stop.set()
        self._wake_outbox.set()
        self._wake_delivery.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self._started:
            try:
                conn = connect(self._path)
                try:
                    self._write_incoming(conn)
                finally:
                    conn.close()
            except Exception:
                log.exception("could not write the last webhook events")

    @property
    def depth(self) -> int:
        with self._lock:
            return self._stored + len(self._incoming)

    @property
    def in_memory(self) -> int:
        """Events not yet written to disk (0 once the outbox thread caught up)."""
        with self._lock:
            return len(self._incoming) + (1 if self._writing else 0)

    def delivery(self) -> Delivery | None:
        """The delivery state for the bot's status (None: no webhook and nothing queued)."""
        depth = self.depth
        if self._target() is None and depth == 0:
            return None
        return self._record.snapshot(depth)

    def idle(self) -> bool:
        """Nothing left to deliver (used by tests and at shutdown)."""
        return self.depth == 0 and not self._writing

    def _publish_depth(self) -> None:
        self._metrics.webhook_queue(self.depth)

    # --- the outbox thread ------------------------------------------------------------------

    def _run_outbox(self) -> None:
        conn = connect(self._path)
        try:
            while not self._stop.is_set():
                self._wake_outbox.wait(1.0)
                self._wake_outbox.clear()
                try:
                    if self._write_incoming(conn):
                        self._wake_delivery.set()
                except Exception:
                    log.exception("webhook outbox write failed; retrying")
                    self._stop.wait(1.0)
        finally:
            conn.close()

    def _write_incoming(self, conn: Any) -> bool:
        with self._lock:
            batch = [self._incoming.popleft()
                     for _ in range(min(self._settings.batch, len(self._incoming)))]
            self._writing = bool(batch)
        if not batch:
            return False
        try:
            self._db_lock.acquire()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO webhook_outbox (delivery_id, event, body, created) "
                    "VALUES (?, ?, ?, ?)", batch)
                (count,) = conn.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()
                over = count - self._settings.queue_max
                if over > 0:
                    conn.execute("DELETE FROM webhook_outbox WHERE seq IN (SELECT seq FROM "
                                 "webhook_outbox ORDER BY seq LIMIT ?)", (over,))
                    count -= over
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                with self._lock:
                    self._incoming.extendleft(reversed(batch))
                raise
            with self._lock:
                self._stored = count
        finally:
            self._db_lock.release()
            with self._lock:
                self._writing = False
        if over > 0:
            log.warning("webhook queue full; dropped the oldest events",
                        extra={"dropped": over, "limit": self._settings.queue_max})
            for _ in range(over):
                self._metrics.webhook("dropped")
        self._publish_depth()
        return True

    # --- the delivery thread ----------------------------------------------------------------

    def _run_delivery(self) -> None:
        # Why the policy refuses the target, if it does, said at start-up rather than with the
        # first event (here, not in start(): the check may wait on DNS).
        try:
            spec = self._target()
            if spec is not None:
                self._explain(spec.url, check(spec.url, self._settings.egress,
                                              self._settings.resolver))
        except Exception:
            log.warning("could not check the webhook target against the egress policy")
        conn = connect(self._path)
        try:
            while not self._stop.is_set():
                try:
                    wait = self._deliver_next(conn)
                except Exception:
                    log.exception("webhook delivery loop error")
                    wait = 1.0
                if wait > 0:
                    self._wake_delivery.wait(wait)
                    self._wake_delivery.clear()
        finally:
            conn.close()

    def _deliver_next(self, conn: Any) -> float:
        """Deliver (or give up) the oldest event; the seconds to wait before the next try."""
        row = conn.execute("SELECT seq, delivery_id, event, body, created, attempts, next_at "
                           "FROM webhook_outbox ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return 5.0
        seq, delivery_id, event, body, created, attempts, next_at = row
        now = self._clock()
        if next_at > now:
            return float(min(next_at - now, 5.0))
        spec = self._target()
        if spec is None:
            return 5.0  # the webhook was removed from the spec: keep the backlog, wait
        if self._secret is None:
            if not self._warned_no_key:
                self._warned_no_key = True
                log.error("spec.webhook is set but there is no signing key "
                          "(WABOT_WEBHOOK_SECRET or WABOT_WEBHOOK_SECRET_FILE); events are "
                          "kept and not delivered unsigned")
            self._record.failed(now, "no signing key")
            return 5.0
        if now - created > self._settings.max_age_s:
            self._remove(conn, seq)
            self._metrics.webhook("failed")
            log.error("webhook event given up after its maximum age",
                      extra={"delivery_id": delivery_id, "webhook_event": event,
                             "attempts": attempts, "max_age_s": self._settings.max_age_s})
            return 0.0
        timestamp = str(int(now))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Wabot-Event": event,
            "X-Wabot-Delivery": delivery_id,
            "X-Wabot-Timestamp": timestamp,
            "X-Wabot-Signature": sign(self._secret, timestamp, bytes(body)),
        }
        started = time.perf_counter()
        attempt = self._post(spec.url, bytes(body), headers, self._settings.timeout_s)
        self._metrics.webhook_attempt(time.perf_counter() - started)
        self._explain(spec.url, attempt.refused)
        if attempt.ok:
            self._remove(conn, seq)
            self._metrics.webhook("sent")
            self._record.delivered(self._clock())
            return 0.0
        self._record.failed(self._clock(), short_reason(attempt.detail))
        attempts += 1
        delay = self._settings.backoff.delay(attempts, self._rand())
        conn.execute("UPDATE webhook_outbox SET attempts = ?, next_at = ? WHERE seq = ?",
                     (attempts, self._clock() + delay, seq))
        self._metrics.webhook("retried")
        log.warning("webhook delivery failed; will retry",
                    extra={"delivery_id": delivery_id, "webhook_event": event,
                           "attempt": attempts, "error": attempt.detail,
                           "retry_in_s": round(delay, 1)})
        return 0.0

    def _post_with_policy(self, url: str, body: bytes, headers: dict[str, str],
                          timeout_s: float) -> Attempt:
        return post(url, body, headers, timeout_s, policy=self._settings.egress,
                    resolver=self._settings.resolver)

    def _explain(self, url: str, refused: str | None) -> None:
        """Log why the policy refuses a target, once per target and reason: for the admin
        (which setting would allow it), naming the kind of address, never a port."""
        if refused is None:
            return
        origin = url_origin(url)
        if (origin, refused) in self._explained:
            return
        self._explained.add((origin, refused))
        log.error("spec.webhook.url is not allowed by the webhook egress policy; events are "
                  "kept and retried, and fail as unreachable",
                  extra={"webhook": origin, "reason": refused,
                         "allow_with": f"{ALLOW_CIDRS_ENV} or {ALLOW_HOSTS_ENV} "
                                       "(set by the admin, not by the bot's spec)"})

    def _remove(self, conn: Any, seq: int) -> None:
        with self._db_lock:
            conn.execute("DELETE FROM webhook_outbox WHERE seq = ?", (seq,))
            (count,) = conn.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()
            with self._lock:
                self._stored = count
        self._publish_depth()
