"""Upload-peak hook (on PYTHONPATH of the measured worker only): lets a real `python -m wabot
worker` send media through its API with WhatsApp unreachable, paying what a real send costs.

The worker dials through WABOT_PROXY_URL, a SOCKS5 address on loopback where nothing listens:
the dial is refused at once and no packet leaves the machine, but neonize's Go side has made
and registered its whatsmeow client. This hook patches neonize's NewClient as it is imported:

- `connect` makes that refused dial, then hands the worker neonize's ConnectedEv through the
  client's real dispatcher and stays up like a live session until `stop`;

- answers `upload` by calling neonize's real `upload` first: the file goes to Go (a copy),
  whatsmeow hashes, pads, encrypts and MACs it (its own copies), and only then fails to reach
  the media servers ("websocket not connected"). That failure is the seam: the hook answers
  as the media server would, with neonize's UploadResponse. So the memory measured is the
  worker's and neonize's/whatsmeow's real cost of a send, the network transfer aside;
- answers `send_message` with neonize's SendResponse (the other network call);
- answers `download_any` from memory for the received files the benchmark announces (the
  download stage: spec.media.download full), as bench/_command_hooks does;
- once the worker accepts sends, writes <WABOT_BENCH_UPLOAD_READY>.

Download stage: the file <WABOT_BENCH_UPLOAD_TRIGGER>.download.<n>.<bytes> makes the hook
build a received document of that size (then <...>.prepared: the benchmark resets its peaks),
<...>.go makes it dispatch it, and <...>.done (JSON) says it was stored.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.abc
import importlib.util
import json
import os
import sys
import threading
import time
from typing import Any

_READY = os.environ.get("WABOT_BENCH_UPLOAD_READY")
_TRIGGER = os.environ.get("WABOT_BENCH_UPLOAD_TRIGGER", "")
_FILES: dict[str, bytes] = {}


def _worker() -> Any:
    for obj in gc.get_objects():
        if type(obj).__name__ == "Worker" and type(obj).__module__ == "botworker.worker":
            return obj
    return None


def _dispatch(client: Any, ev: Any) -> None:
    import ctypes

    from neonize.events import EVENT_TO_INT

    raw = ev.SerializePartialToString()
    buf = ctypes.create_string_buffer(raw, len(raw))
    client.event.execute(0, ctypes.addressof(buf), len(raw), EVENT_TO_INT[type(ev)])


def _patch(cls: Any) -> None:
    """neonize's NewClient with the network calls answered here (see the docstring)."""
    from neonize.events import ConnectedEv
    from neonize.exc import UploadError
    from neonize.proto.Neonize_pb2 import SendResponse, UploadResponse

    count = iter(range(1, 1 << 30))
    real_connect, real_upload = cls.connect, cls.upload
    stopped = threading.Event()

    def connect(self: Any, proxy_settings: Any = None) -> None:
        # Refused by the loopback proxy, after the Go side registered its client.
        with contextlib.suppress(Exception):
            real_connect(self, proxy_settings)
        _dispatch(self, ConnectedEv())
        stopped.wait()

    def stop(self: Any) -> None:
        stopped.set()

    def upload(self: Any, binary: bytes, media_type: Any = None) -> Any:
        try:
            real_upload(self, binary, media_type)  # Go copies and encrypts it
        except UploadError as exc:
            if "not connected" not in str(exc):
                raise
        n = next(count)
        return UploadResponse(url=f"https://mmg.whatsapp.net/v/t62/b{n}",
                              DirectPath=f"/v/t62/b{n}", MediaKey=os.urandom(32),
                              FileSHA256=hashlib.sha256(binary).digest(),
                              FileEncSHA256=os.urandom(32), FileLength=len(binary))

    def send_message(self: Any, to: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        return SendResponse(ID=f"BENCH{next(count)}", Timestamp=int(time.time()))

    def download_any(self: Any, message: Any, path: Any = None) -> bytes:
        for _, body in message.ListFields():
            found = _FILES.pop(getattr(body, "directPath", ""), None)
            if found is not None:
                return found
        raise RuntimeError("no such file")

    cls.connect, cls.stop, cls.upload = connect, stop, upload
    cls.send_message, cls.download_any = send_message, download_any


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches neonize.client right after it is first imported (the worker imports it late,
    after its lazy-import layer: importing it here would change what the idle bot loads)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "neonize.client":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        exec_module = spec.loader.exec_module

        def patched(module: Any) -> None:
            exec_module(module)
            _patch(module.NewClient)

        spec.loader.exec_module = patched  # type: ignore[method-assign]
        return spec


def _stored(worker: Any) -> float:
    total = 0.0
    for metric in worker.metrics.registry.collect():
        if metric.name == "wabot_media_downloads":
            total += sum(s.value for s in metric.samples if s.labels.get("result") == "stored"
                         and s.name == "wabot_media_downloads_total")
    return total


def _download(worker: Any, size: int, name: str) -> dict[str, Any]:
    from tests.support import wamessages as wa

    ev, data = wa.media_event("document", size)
    _FILES[wa.direct_path(ev)] = data
    del data
    gc.collect()
    with open(name + ".prepared", "w"):
        pass
    while not os.path.exists(name + ".go"):
        time.sleep(0.05)
    before = _stored(worker)
    _dispatch(worker.client, ev)
    deadline = time.monotonic() + 120
    while _stored(worker) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"stored": _stored(worker) - before}


def _run() -> None:
    worker = None
    while worker is None:
        time.sleep(0.2)
        worker = _worker()
    while getattr(worker, "connection", None) is None or not worker.connection.can_send():
        time.sleep(0.05)
    assert _READY is not None
    with open(_READY, "w") as f:
        f.write("ready")
    n = 0
    while True:
        n += 1
        prefix = f"{_TRIGGER}.download.{n}."
        found = None
        while found is None:
            time.sleep(0.1)
            directory, base = os.path.split(prefix)
            found = next((name for name in os.listdir(directory or ".")
                          if name.startswith(base) and name.rsplit(".", 1)[-1].isdigit()),
                         None)
        size = int(found.rsplit(".", 1)[-1])
        path = os.path.join(directory, found)
        answer = _download(worker, size, path)
        with open(path + ".done", "w") as f:
            json.dump(answer, f)


if _READY and _TRIGGER:
    sys.meta_path.insert(0, _PatchOnImport())
    threading.Thread(target=_run, name="bench-upload", daemon=True).start()
