"""Density hook (on PYTHONPATH of the measured worker only): one command through the real
pipeline of a real `python -m wabot worker`, so the benchmark can read the memory of a bot
that has worked, not only of one that never did.

WhatsApp is unreachable here, so no message can arrive from it. WABOT_BENCH_COMMANDS lists
one command text per stage, separated by ";" (e.g. "!ping;!note k v"). When the file
<WABOT_BENCH_COMMAND_TRIGGER>.<stage> appears, this hook builds a real neonize `MessageEv`
with that stage's text and hands its bytes to the worker's own client dispatcher
(`client.event.execute`), exactly as neonize's Go side delivers a message. The command runs,
its reply is dropped as not connected (the one seam: no network), and its audit row goes to
the database. Once the command has been handled and the audit writer has nothing left to
write, the hook writes <WABOT_BENCH_COMMAND_DONE>.<stage> (JSON).
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from typing import Any

_TRIGGER = os.environ.get("WABOT_BENCH_COMMAND_TRIGGER")
_DONE = os.environ.get("WABOT_BENCH_COMMAND_DONE", "")
_COMMANDS = [c for c in os.environ.get("WABOT_BENCH_COMMANDS", "!ping").split(";") if c]


def _worker() -> Any:
    for obj in gc.get_objects():
        if type(obj).__name__ == "Worker" and type(obj).__module__ == "botworker.worker":
            return obj
    return None


def _feed(client: Any, text: str, n: int) -> None:
    import ctypes

    from neonize.events import EVENT_TO_INT, MessageEv
    from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
    from neonize.utils import build_jid

    chat = build_jid("15550001111")
    ev = MessageEv(
        Info=MessageInfo(MessageSource=MessageSource(Chat=chat, Sender=chat, IsFromMe=False,
                                                     IsGroup=False),
                         ID=f"BENCHCMD{n:04d}", Pushname="Bench",
                         Timestamp=int(time.time() * 1000)),
        Message=Message(conversation=text))
    data = ev.SerializePartialToString()
    buf = ctypes.create_string_buffer(data, len(data))
    client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[MessageEv])


def _handled(worker: Any) -> float:
    total = 0.0
    for metric in worker.metrics.registry.collect():
        if metric.name == "wabot_commands":
            total += sum(s.value for s in metric.samples if s.name == "wabot_commands_total")
    return total


def _stage(worker: Any, n: int, text: str) -> dict[str, Any]:
    if worker is None:
        return {"error": "no botworker.worker.Worker in this process"}
    before = _handled(worker)
    _feed(worker.client, text, n)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (_handled(worker) <= before or worker.audit.pending):
        time.sleep(0.1)
    return {"command": text, "handled": _handled(worker) - before,
            "audit_pending": worker.audit.pending,
            "schema_ready": worker.datalayer.schema_ready}


def _run() -> None:
    worker = None
    for n, text in enumerate(_COMMANDS, start=1):
        while not os.path.exists(f"{_TRIGGER}.{n}"):
            time.sleep(0.1)
        worker = worker or _worker()
        done = f"{_DONE}.{n}"
        with open(done + ".tmp", "w") as f:
            json.dump(_stage(worker, n, text), f)
        os.replace(done + ".tmp", done)


if _TRIGGER and _DONE:
    threading.Thread(target=_run, name="bench-command", daemon=True).start()
