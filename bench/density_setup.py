"""Density, what is measured: the targets, the command stages, the bot's spec, the image, and
the reading of a process's memory over a hold. Shared by the worker runs (bench/density.py),
the container (bench/density_container.py) and the report (bench/density_report.py), so that
each of them imports this one and none of them the others."""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import BENCH, proc_status

# Issue 28: an idle bot <= 64 MiB and <= 0.73x one Baileys socket; a bot that has handled every
# kind of command, database commands on PostgreSQL included, <= 85 MiB, also after 10,000
# mixed commands (no growth).
TARGET_IDLE_MB = 64.0
TARGET_IDLE_RATIO = 0.73
TARGET_WORKED_MB = 85.0
TARGET_SLOPE_MB = 0.1  # MiB per 1,000 commands over the mixed run
IMAGE = os.environ.get("WABOT_BENCH_WORKER_IMAGE", "localhost/wabot-worker:test")
COMMAND_HOOKS = BENCH / "_command_hooks"
# After the idle reading, one stage at a time: the first command (its audit row loads the
# driver), every other kind (built-ins, a custom command, an unknown command, a message that is
# no command), then the database commands (the key-value store of the notes plugin).
STAGES: tuple[tuple[str, ...], ...] = (
    ("!ping",),
    ("!help", "!info", "!hello", "!nosuch", "good morning"),
    ("!note k v", "!note k"),
)
# Then (the SQLite worker) a received file of each kind, 1 MiB, stored (spec.media.download:
# full): the media code and its libraries load only now, and the reading after each is the
# memory of a bot that has taken in that kind.
MEDIA_STAGES: tuple[tuple[str, ...], ...] = tuple(
    (f"media:{kind}",) for kind in ("image", "video", "audio", "voice", "document", "sticker"))
# The mixed run: every kind in turn ({k}: one of 100 keys, {i}: the message's number).
MIXED_TEXTS = ("!ping", "!help", "!note k{k} value {i}", "!info", "!hello", "!note k{k}",
               "!nosuch", "how are you {i}")
# The webhook variant (bench/density_webhook.py): mixed commands after its stages, each one a
# `message` and a `command` delivery to a receiver on loopback.
WEBHOOK_MIXED = 2_000
SPEC = """serverName: acme
botId: demo
rateLimit: {perChatPerMinute: 600, perBotPerMinute: 6000}
commands:
  custom: [{name: hello, response: "Hello from the benchmark"}]
  plugins: [notes]
media: {download: full}
"""


def sample_rss(pid: int, started: float, hold_s: float, every_s: float = 0.5
               ) -> dict[str, Any]:
    """VmRSS every `every_s` until `hold_s` after `started`: the value at the end (rss_mb),
    and the lowest and highest seen over the second half of the hold."""
    seen: list[tuple[float, float]] = []
    while True:
        t = time.monotonic() - started
        seen.append((t, proc_status(pid)["VmRSS"] / 1024))
        if t >= hold_s:
            break
        time.sleep(min(every_s, max(0.0, hold_s - t)))
    late = [v for t, v in seen if t >= hold_s / 2] or [seen[-1][1]]
    return {"rss_mb": seen[-1][1], "rss_min_mb": min(late), "rss_max_mb": max(late),
            "held_s": round(seen[-1][0], 1)}


def worker_tuning() -> dict[str, str]:
    """The runtime settings every worker gets from the worker-environment contract
    (wabot/workerenv.py): the benchmark runs the worker as a pod runs it."""
    from wabot import workerenv

    return dict(getattr(workerenv, "RUNTIME_TUNING", ()))
