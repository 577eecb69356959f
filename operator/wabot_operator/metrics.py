"""Prometheus metrics of the operator (kopf has none of its own).

Names follow controller-runtime's so existing dashboards and alerts read naturally; labels are
bounded (a result, a phase), never a bot's name.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from wabot.spec import Phase

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_TOTAL = Counter(
    "wabot_operator_reconcile_total",
    "Reconcile passes over WhatsAppBots, by result (success, requeue, error).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "wabot_operator_reconcile_errors_total",
    "Reconcile passes that failed (an API error or an unexpected exception).",
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "wabot_operator_reconcile_duration_seconds",
    "Time one reconcile pass over one WhatsAppBot took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BOTS = Gauge(
    "wabot_bots",
    "WhatsAppBots managed by this operator, by the phase last written to their status.",
    ["phase"],
    registry=REGISTRY,
)
PODS_WAITING_FOR_RESTART = Gauge(
    "wabot_operator_pod_restarts_waiting",
    "Bots whose pod re-creation waits for a fleet-wide start slot "
    "(WABOT_OPERATOR_POD_RESTARTS_PER_SECOND).",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "wabot_operator_api_requests_total",
    "Requests of the reconcile passes and the start-up listing to the API server, by method "
    "and HTTP status (0: no response). kopf's own watches, finalizer patches and Events are "
    "not counted.",
    ["method", "code"],
    registry=REGISTRY,
)
for _result in ("success", "requeue", "error"):
    RECONCILE_TOTAL.labels(_result)


class PhaseBook:
    """Which phase each bot is in, so the gauge is recomputed from the truth instead of being
    incremented and decremented (which drifts when an update is missed)."""

    def __init__(self, gauge: Gauge = BOTS) -> None:
        self._gauge = gauge
        self._phases: dict[tuple[str, str], Phase] = {}
        self._lock = threading.Lock()
        self._publish()

    def set(self, namespace: str, name: str, phase: Phase) -> None:
        with self._lock:
            if self._phases.get((namespace, name)) == phase:
                return  # most passes: recounting 1,000 bots each time was O(bots) per pass
            self._phases[(namespace, name)] = phase
            self._publish()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((namespace, name), None)
            self._publish()

    def counts(self) -> dict[Phase, int]:
        with self._lock:
            out = dict.fromkeys(Phase, 0)
            for phase in self._phases.values():
                out[phase] += 1
            return out

    def __len__(self) -> int:
        return len(self._phases)

    def _publish(self) -> None:
        counts = dict.fromkeys(Phase, 0)
        for phase in self._phases.values():
            counts[phase] += 1
        for phase, n in counts.items():
            self._gauge.labels(phase.value).set(n)


_server_lock = threading.Lock()
_server_port: int | None = None


def serve(port: int) -> None:
    """Start the /metrics endpoint once per process (a second call is a no-op)."""
    global _server_port
    with _server_lock:
        if _server_port is not None or port == 0:
            return
        start_http_server(port, registry=REGISTRY)
        _server_port = port
