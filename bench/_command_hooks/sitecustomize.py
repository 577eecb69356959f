"""Density hook (on PYTHONPATH of the measured worker only): commands through the real
pipeline of a real `python -m wabot worker`, so the benchmark can read the memory of a bot
that has worked, not only of one that never did.

WhatsApp is unreachable here, so no message can arrive from it. WABOT_BENCH_COMMANDS lists the
stages, separated by ";", each one or more message texts separated by "|" (e.g.
"!ping;!help|!info;!note k v|!note k"). When the file <WABOT_BENCH_COMMAND_TRIGGER>.<stage>
appears, this hook builds a real neonize `MessageEv` for each text of that stage and hands its
bytes to the worker's own client dispatcher (`client.event.execute`), exactly as neonize's Go
side delivers a message. The commands run, their replies are dropped as not connected (the one
seam: no network), and their audit rows go to the database. Once every command has been
handled and the audit writer has nothing left to write, the hook writes
<WABOT_BENCH_COMMAND_DONE>.<stage> (JSON).

A text "media:<kind>" (image, video, audio, voice, document, sticker) is a received file of
that kind instead (tests/support/wamessages.media_event, 1 MiB): the worker's client answers
neonize's `download_any` with its bytes (the seam that would fetch from WhatsApp's media
servers), and the stage ends once the worker has stored it (spec.media.download: full), so
the reading after it is the memory of a bot that has taken in that kind of media.

With WABOT_BENCH_MIXED=N, the file <TRIGGER>.mixed starts messages cycling through
WABOT_BENCH_MIXED_TEXTS ("|"-separated; `{i}` becomes the message's number, `{k}` that number
modulo 100) until N commands have been sent (texts without the prefix are messages, not
commands), 20 in flight at most, over 200 chats. After every WABOT_BENCH_MIXED_EVERY commands
(default 1,000), once the
pipeline and the audit writer are idle, it appends this process's VmRSS and its memory
cgroup's usage to <DONE>.mixed.jsonl; <DONE>.mixed marks the end.
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
_STAGES = [[t for t in stage.split("|") if t]
           for stage in os.environ.get("WABOT_BENCH_COMMANDS", "!ping").split(";") if stage]
_MIXED = int(os.environ.get("WABOT_BENCH_MIXED", "0") or 0)
_MIXED_TEXTS = [t for t in os.environ.get("WABOT_BENCH_MIXED_TEXTS", "!ping").split("|") if t]
_MIXED_EVERY = int(os.environ.get("WABOT_BENCH_MIXED_EVERY", "1000") or 1000)
_PREFIX = os.environ.get("WABOT_BENCH_PREFIX", "!")


def _worker() -> Any:
    for obj in gc.get_objects():
        if type(obj).__name__ == "Worker" and type(obj).__module__ == "botworker.worker":
            return obj
    return None


def _feed(client: Any, text: str, n: int, chat_no: int = 1111) -> None:
    import ctypes

    from neonize.events import EVENT_TO_INT, MessageEv
    from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
    from neonize.utils import build_jid

    chat = build_jid(f"1555000{chat_no:04d}")
    ev = MessageEv(
        Info=MessageInfo(MessageSource=MessageSource(Chat=chat, Sender=chat, IsFromMe=False,
                                                     IsGroup=False),
                         ID=f"BENCHCMD{n:08d}", Pushname="Bench",
                         Timestamp=int(time.time() * 1000)),
        Message=Message(conversation=text))
    data = ev.SerializePartialToString()
    buf = ctypes.create_string_buffer(data, len(data))
    client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[MessageEv])


def _metric(worker: Any, family: str, sample: str) -> float:
    total = 0.0
    for metric in worker.metrics.registry.collect():
        if metric.name == family:
            total += sum(s.value for s in metric.samples if s.name == sample)
    return total


def _handled(worker: Any) -> float:
    return _metric(worker, "wabot_commands", "wabot_commands_total")


def _idle(worker: Any, handled_at_least: float, timeout_s: float = 60.0) -> bool:
    """Wait until `handled_at_least` commands are counted, nothing waits in the pipeline's
    queue and the audit writer has written everything."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (_handled(worker) >= handled_at_least and not worker.audit.pending
                and _metric(worker, "wabot_queue_depth", "wabot_queue_depth") == 0):
            return True
        time.sleep(0.02)
    return False


def _memory() -> dict[str, float]:
    """VmRSS of this process and, beside it, what its memory cgroup is charged (v1 or v2)."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "memory":
                base = f"/sys/fs/cgroup/memory{path}"
                if os.path.exists(f"{base}/memory.usage_in_bytes"):
                    with open(f"{base}/memory.usage_in_bytes") as u:
                        out["cgroup_usage"] = int(u.read()) / 1048576
    return out


_FILES: dict[str, bytes] = {}


def _download_any(message: Any, path: Any = None) -> bytes:
    for _, body in message.ListFields():
        direct = getattr(body, "directPath", "")
        if direct in _FILES:
            return _FILES[direct]
    raise RuntimeError("no such file")


def _stored(worker: Any) -> float:
    return _metric(worker, "wabot_media_downloads", "wabot_media_downloads_total")


def _feed_media(worker: Any, kind: str, timeout_s: float = 60.0) -> None:
    """A received `kind` file through the dispatcher; returns once the worker handled it."""
    import ctypes

    from neonize.events import EVENT_TO_INT, MessageEv

    from tests.support import wamessages as wa

    worker.client.download_any = _download_any
    ev, data = wa.media_event(kind, 1024 * 1024)
    _FILES[wa.direct_path(ev)] = data
    before = _stored(worker)
    raw = ev.SerializePartialToString()
    buf = ctypes.create_string_buffer(raw, len(raw))
    worker.client.event.execute(0, ctypes.addressof(buf), len(raw), EVENT_TO_INT[MessageEv])
    deadline = time.monotonic() + timeout_s
    while _stored(worker) <= before and time.monotonic() < deadline:
        time.sleep(0.02)


def _stage(worker: Any, n: int, texts: list[str]) -> dict[str, Any]:
    before = _handled(worker)
    stored_before = _stored(worker)
    commands = sum(1 for t in texts if t.startswith(_PREFIX))
    for i, text in enumerate(texts):
        if text.startswith("media:"):
            _feed_media(worker, text.removeprefix("media:"))
            continue
        _feed(worker.client, text, n * 100 + i)
        _idle(worker, before + sum(1 for t in texts[:i + 1] if t.startswith(_PREFIX)))
    _idle(worker, before + commands)
    return {"command": "|".join(texts), "handled": _handled(worker) - before,
            "media_stored": _stored(worker) - stored_before,
            "expected": commands, "audit_pending": worker.audit.pending,
            "schema_ready": worker.datalayer.schema_ready}


def _mixed(worker: Any) -> dict[str, Any]:
    """N messages cycling through the mixed texts, the memory after every thousand."""
    before = _handled(worker)
    commands = 0
    started = time.monotonic()
    with open(f"{_DONE}.mixed.jsonl", "a") as out:
        out.write(json.dumps({"commands": 0, "messages": 0, "t": 0.0, **_memory()}) + "\n")
        out.flush()
        i = 0
        while commands < _MIXED:
            i += 1
            text = _MIXED_TEXTS[(i - 1) % len(_MIXED_TEXTS)]
            text = text.replace("{i}", str(i)).replace("{k}", str(i % 100))
            command = text.startswith(_PREFIX)
            commands += command
            _feed(worker.client, text, 10_000_000 + i, chat_no=i % 200)
            if i % 20 == 0 or (command and commands % _MIXED_EVERY == 0):
                _idle(worker, before + commands)
            if command and commands % _MIXED_EVERY == 0:
                out.write(json.dumps({"commands": commands, "messages": i,
                                      "t": round(time.monotonic() - started, 2),
                                      **_memory()}) + "\n")
                out.flush()
    _idle(worker, before + commands)
    return {"messages": i, "commands": commands, "handled": _handled(worker) - before,
            "seconds": round(time.monotonic() - started, 2),
            "audit_pending": worker.audit.pending}


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.1)


def _write(path: str, answer: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(answer, f)
    os.replace(path + ".tmp", path)


def _the_worker() -> Any:
    """This process's Worker, once it has one. The worker's child processes (the migration,
    the role check) inherit this hook with the environment: they have none and never
    answer."""
    while True:
        worker = _worker()
        if worker is not None:
            return worker
        time.sleep(0.5)


def _run() -> None:
    worker = None
    for n, texts in enumerate(_STAGES, start=1):
        _wait_for(f"{_TRIGGER}.{n}")
        worker = worker or _the_worker()
        _write(f"{_DONE}.{n}", _stage(worker, n, texts))
    if _MIXED:
        _wait_for(f"{_TRIGGER}.mixed")
        _write(f"{_DONE}.mixed", _mixed(worker or _the_worker()))


if _TRIGGER and _DONE:
    threading.Thread(target=_run, name="bench-command", daemon=True).start()
