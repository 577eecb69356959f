"""Density with a webhook: the PostgreSQL worker of bench/density.py, its spec with a webhook
(events `message` and `command`) to a receiver on loopback (tests/worker/receiver.py, which
checks every signature), so its readings are those of a production bot whose every message and
command becomes a delivery: the event data, its JSON and the delivery threads included. The
egress policy refuses loopback unless the admin allows it: the benchmark is that admin
(WABOT_WEBHOOK_ALLOW_CIDRS), as tests/worker/test_webhooks.py is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.density_setup import SPEC, STAGES

KEY = "whsec-density-bench-0123456789-SIGNING"
WEBHOOK = """webhook:
  url: {url}
  secretRef: {{name: hook}}
  events: [message, command]
"""


def measure(measure_worker: Callable[..., dict[str, Any]], env: dict[str, str], hold_s: float,
            workdir: Path, mixed: int) -> dict[str, Any]:
    """bench/density.measure_worker's readings of a worker with the webhook, and what its
    receiver got (deliveries, all signed)."""
    from tests.worker.receiver import Receiver

    receiver = Receiver(KEY.encode()).start()
    try:
        out = measure_worker(
            "postgres_webhook", {**env, "WABOT_WEBHOOK_SECRET": KEY,
                                 "WABOT_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32"},
            hold_s, workdir, stages=STAGES, mixed=mixed,
            spec_text=SPEC + WEBHOOK.format(url=receiver.url))
        got = receiver.accepted()
        out["webhook"] = {"deliveries": len(got),
                          "signed": sum(1 for d in got if d.signature_ok),
                          "events": sorted({d.payload["event"] for d in got})}
    finally:
        receiver.stop()
    return out
