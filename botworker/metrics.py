"""The worker's Prometheus metrics, in a registry of its own.

Every series carries `bot` and `server_name` so fleet dashboards can aggregate per tenant
without relabelling; no label ever holds a chat, a phone number or user text (unbounded
cardinality, and personal data). Command names are bounded by the bot's registry, and unknown
commands are counted as "unknown", never by what the user typed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from wabot.states import WorkerState

from . import __version__
from .core.activity import MessageCounts

_BASE = ("bot", "server_name")


class _Children:
    """A labelled series' children by their own labels (the bot's two go first), each looked
    up once: prometheus_client's labels() takes a lock and checks the labels on every call
    (~1.5 us), and a command touches four such series (received, sent, command, duration).
    A child is created on first use, as labels() would, so /metrics lists nothing new."""

    __slots__ = ("_base", "_got", "_series")

    def __init__(self, series: Any, base: tuple[str, str]) -> None:
        self._series = series
        self._base = base
        self._got: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._got.get(labels)
        if child is None:  # two threads racing here get the same child from labels()
            child = self._got[labels] = self._series.labels(*self._base, *labels)
        return child


class Metrics:
    def __init__(self, bot: str, server_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self._base = (bot, server_name)
        self._reconnects_seen = 0
        # The same messages as wabot_messages_received/sent, over the last hour only, for
        # the bot's status (status.worker.activity): no one scrapes a pod to show them.
        self.activity = MessageCounts(time.time())
        # Created in this order so /metrics lists the series as it always has.
        self._message_series(self.registry, __version__)
        self._connection_series(self.registry)
        self._delivery_series(self.registry)
        self._kind_series(self.registry)
        self._zero_known_labels()
        # What every message or command counts, with its children looked up once.
        self._received_of = _Children(self._received, self._base)
        self._sent_of = _Children(self._sent, self._base)
        self._dropped_of = _Children(self._dropped, self._base)
        self._commands_of = _Children(self._commands, self._base)
        self._duration_of = _Children(self._duration, self._base)

    def _message_series(self, r: CollectorRegistry, version: str) -> None:
        bot, server_name = self._base
        self._info = Gauge("wabot_worker_info", "Worker build", [*_BASE, "version"], registry=r)
        self._info.labels(bot, server_name, version).set(1)
        self._received = Counter(
            "wabot_messages_received", "Messages received from WhatsApp", _BASE, registry=r
        )
        self._sent = Counter("wabot_messages_sent", "Messages sent to WhatsApp", _BASE, registry=r)
        self._dropped = Counter(
            "wabot_messages_dropped",
            "Messages not processed or replies not sent, by reason",
            [*_BASE, "reason"],
            registry=r,
        )
        self._commands = Counter(
            "wabot_commands", "Commands handled, by command and result",
            [*_BASE, "command", "result"], registry=r,
        )
        self._duration = Histogram(
            "wabot_command_duration_seconds",
            "Time spent in command handlers",
            [*_BASE, "command"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )

    def _connection_series(self, r: CollectorRegistry) -> None:
        self._state = Gauge(
            "wabot_connection_state", "1 for the current connection state",
            [*_BASE, "state"], registry=r,
        )
        self._connected = Gauge("wabot_connected", "1 when connected to WhatsApp", _BASE,
                                registry=r)
        self._reconnects = Counter(
            "wabot_reconnects", "Reconnect attempts to WhatsApp", _BASE, registry=r
        )
        self._lease = Gauge("wabot_lease_held", "1 while this pod holds the bot's Lease", _BASE,
                            registry=r)
        self._ready = Gauge("wabot_ready", "1 while /readyz answers 200", _BASE, registry=r)
        self._db_up = Gauge("wabot_db_up", "1 when the last database operation succeeded",
                            _BASE, registry=r)

    def _delivery_series(self, r: CollectorRegistry) -> None:
        self._spool = Gauge(
            "wabot_audit_spool_rows", "Audit rows waiting for the database (memory and disk)",
            _BASE, registry=r,
        )
        self._queue = Gauge("wabot_queue_depth", "Messages waiting for the pipeline", _BASE,
                            registry=r)
        self._kube_errors = Counter(
            "wabot_kube_errors", "Failed Kubernetes API calls, by operation",
            [*_BASE, "operation"], registry=r,
        )
        self._spec_reloads = Counter(
            "wabot_spec_reloads", "Spec changes applied without a restart, by result",
            [*_BASE, "result"], registry=r,
        )
        self._webhook_deliveries = Counter(
            "wabot_webhook_deliveries",
            "Webhook delivery outcomes: sent, retried (an attempt failed and is retried), "
            "failed (given up after the maximum age), dropped (queue bound hit)",
            [*_BASE, "result"], registry=r,
        )
        self._webhook_queue = Gauge(
            "wabot_webhook_queue_depth", "Webhook events waiting for delivery (memory and disk)",
            _BASE, registry=r,
        )
        self._webhook_duration = Histogram(
            "wabot_webhook_delivery_duration_seconds",
            "Time of one webhook delivery attempt, whatever its outcome",
            _BASE,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self._replies_unquoted = Counter(
            "wabot_replies_unquoted",
            "Replies sent without quoting the command because the quote could not be built, "
            "by reason (invalid_utf8: the message ID or another quoted field is not valid "
            "UTF-8; error: anything else)",
            [*_BASE, "reason"], registry=r,
        )
        self._api_requests = Counter(
            "wabot_api_requests", "Send-message API requests to this worker, by result",
            [*_BASE, "result"], registry=r,
        )

    def _kind_series(self, r: CollectorRegistry) -> None:
        """Messages by kind, both ways, and the media kept."""
        self._inbound = Counter(
            "wabot_messages_received_by_type",
            "Incoming messages and message events by kind (text, image, video, audio, voice, "
            "document, sticker, location, live_location, contact, contacts, poll, unknown, "
            "reaction, edited, revoked, poll_vote)",
            [*_BASE, "type"], registry=r,
        )
        self._inbound_children: dict[str, Counter] = {}
        self._media = Counter(
            "wabot_media_downloads",
            "Incoming media files by outcome (stored, too_large, refused, no_space, failed)",
            [*_BASE, "result"], registry=r,
        )
        self._media_bytes = Gauge("wabot_media_stored_bytes",
                                  "Bytes of received media kept on the volume", _BASE,
                                  registry=r)
        self._sends = Counter(
            "wabot_sends",
            "Messages and chat actions sent (API, replies, plugins), by type (text, image, "
            "video, audio, voice, document, sticker, location, contact, poll, reaction, edit, "
            "delete, read, presence) and result (sent, rate_limited, not_connected, invalid, "
            "busy, failed)",
            [*_BASE, "type", "result"], registry=r,
        )
        self._send_children: dict[tuple[str, str], Counter] = {}

    def _zero_known_labels(self) -> None:
        """Series with a known label set exist from the start (at 0), so a rate() or an alert
        sees them before the first event."""
        for result in ("sent", "retried", "failed", "dropped"):
            self._webhook_deliveries.labels(*self._base, result)
        for state in WorkerState:
            self._state.labels(*self._base, state.value).set(0)
        # Unknown until the schema has been checked: 0, so a dead database at start shows.
        self._db_up.labels(*self._base).set(0)
        for reason in ("queue_full", "rate_limited", "duplicate", "send_failed"):
            self._dropped.labels(*self._base, reason)
        for reason in ("invalid_utf8", "error"):
            self._replies_unquoted.labels(*self._base, reason)

    @property
    def identity(self) -> dict[str, str]:
        """The bot and tenant every series carries, as log fields for code that logs on
        behalf of this bot without knowing it otherwise."""
        return {"bot": self._base[0], "server_name": self._base[1]}

    def received(self) -> None:
        self._received_of().inc()
        self.activity.count_in(time.time())

    def sent(self) -> None:
        self._sent_of().inc()
        self.activity.count_out(time.time())

    def dropped(self, reason: str) -> None:
        self._dropped_of(reason).inc()

    def received_type(self, kind: str) -> None:
        # Once per message: the child of each type (a small fixed set) is looked up once.
        child = self._inbound_children.get(kind)
        if child is None:
            child = self._inbound_children[kind] = self._inbound.labels(*self._base, kind)
        child.inc()

    def media(self, result: str) -> None:
        self._media.labels(*self._base, result).inc()

    def media_bytes(self, stored: int) -> None:
        self._media_bytes.labels(*self._base).set(stored)

    def reply_unquoted(self, reason: str) -> None:
        self._replies_unquoted.labels(*self._base, reason).inc()

    def command(self, command: str, result: str, seconds: float | None) -> None:
        self._commands_of(command, result).inc()
        if seconds is not None:
            self._duration_of(command).observe(seconds)

    def set_state(self, state: WorkerState) -> None:
        for s in WorkerState:
            self._state.labels(*self._base, s.value).set(1 if s is state else 0)
        self._connected.labels(*self._base).set(1 if state is WorkerState.CONNECTED else 0)

    def reconnects_to(self, total: int) -> None:
        """Advance the counter to the lifecycle's running total (counters only go up)."""
        delta = total - self._reconnects_seen
        if delta > 0:
            self._reconnects.labels(*self._base).inc(delta)
            self._reconnects_seen = total

    def lease_held(self, held: bool) -> None:
        self._lease.labels(*self._base).set(1 if held else 0)

    def ready(self, ready: bool) -> None:
        self._ready.labels(*self._base).set(1 if ready else 0)

    def db_up(self, up: bool) -> None:
        self._db_up.labels(*self._base).set(1 if up else 0)

    def watch_spool(self, rows: Callable[[], int]) -> None:
        """wabot_audit_spool_rows is read from `rows` (the audit writer's waiting rows) when
        scraped, instead of being set after every audit row."""
        self._spool.labels(*self._base).set_function(rows)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """wabot_queue_depth is read from `depth` (the pipeline queue's size) when scraped,
        instead of being set twice per message (after the put and after the get)."""
        self._queue.labels(*self._base).set_function(depth)

    def kube_error(self, operation: str) -> None:
        self._kube_errors.labels(*self._base, operation).inc()

    def spec_reload(self, result: str) -> None:
        self._spec_reloads.labels(*self._base, result).inc()

    def webhook(self, result: str, seconds: float | None = None) -> None:
        self._webhook_deliveries.labels(*self._base, result).inc()
        if seconds is not None:
            self._webhook_duration.labels(*self._base).observe(seconds)

    def webhook_attempt(self, seconds: float) -> None:
        self._webhook_duration.labels(*self._base).observe(seconds)

    def webhook_queue(self, depth: int) -> None:
        self._webhook_queue.labels(*self._base).set(depth)

    def api_request(self, result: str) -> None:
        self._api_requests.labels(*self._base, result).inc()

    def send_result(self, kind: str, result: str) -> None:
        """Once per message sent (every reply): the labelled child is looked up once."""
        child = self._send_children.get((kind, result))
        if child is None:
            child = self._send_children[(kind, result)] = self._sends.labels(
                *self._base, kind, result)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent); for the info command and tests."""
        got = self.registry.get_sample_value(
            name, {"bot": self._base[0], "server_name": self._base[1], **labels}
        )
        return 0.0 if got is None else float(got)
