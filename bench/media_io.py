"""Received media per bot (issue 24): how fast one worker takes files in (spec.media.download
`full`: the download's bytes checked against the message, hashed, written and fsync'd to the
bot's volume) and serves them back (GET /v1/media/{id} on its own HTTP server, with its token).

The worker is the real one on neonize's real client and dispatcher; the one seam is
`download_any` (what fetches and decrypts a file from WhatsApp's media servers), which answers
at once from memory: the figures are the worker's own cost, not the network's. Files are
JPEGs of a few sizes (tests/support/wamessages.sample), one chat each.
"""

from __future__ import annotations

import ctypes
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import Result, log, wait_until

SIZES = (64 * 1024, 1024 * 1024, 8 * 1024 * 1024)
TOKEN = "bench-media-token-0123456789"


def _client(path: str, files: dict[str, bytes]) -> Any:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import SendResponse

    class MediaClient(NewClient):  # type: ignore[misc]
        def download_any(self, message: Any, path: str | None = None) -> bytes:
            for _, body in message.ListFields():
                found = files.get(getattr(body, "directPath", ""))
                if found is not None:
                    return found
            raise RuntimeError("no such file")

        def send_message(self, to: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            return SendResponse(ID="S", Timestamp=0)

    return MediaClient(path)


class MediaWorker:
    def __init__(self, tmp: Path, quota: int) -> None:
        from botworker.config import load_config
        from botworker.worker import Worker
        from wabot.spec import WhatsAppBotSpec

        self.files: dict[str, bytes] = {}
        self.cfg = load_config({"BOT_ID": "media", "SERVER_NAME": "acme",
                                "AUTH_DIR": str(tmp), "HTTP_PORT": "0",
                                "HTTP_HOST": "127.0.0.1", "POD_NAME": "bench-media",
                                "WABOT_API_TOKEN": TOKEN})
        self.cfg.session_dir.mkdir(parents=True, exist_ok=True)
        spec = WhatsAppBotSpec.model_validate({
            "serverName": "acme", "botId": "media",
            "media": {"download": "full", "maxBytes": 64 * 1024 * 1024, "quotaBytes": quota}})
        self.client = _client(str(self.cfg.session_path), self.files)
        self.worker = Worker(self.cfg, spec, client=self.client, sessions_enabled=False,
                             terminal=False)

    def start(self) -> None:
        from neonize.events import EVENT_TO_INT, ConnectedEv

        self.worker.start()
        data = ConnectedEv(status=True).SerializePartialToString()
        buf = ctypes.create_string_buffer(data, len(data))
        self.client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[ConnectedEv])
        wait_until(lambda: self.worker.ready()[0], 10, "worker ready")

    def stored(self) -> float:
        return self.worker.metrics.value("wabot_media_downloads_total", result="stored")

    def take_in(self, size: int, count: int) -> tuple[float, list[str]]:
        """Seconds for `count` files of `size` bytes to be kept; their ids."""
        from neonize.events import EVENT_TO_INT, MessageEv

        from tests.support import wamessages as wa

        kind = EVENT_TO_INT[MessageEv]
        buffers = []
        for i in range(count):
            ev, data = wa.media_event("image", size, chat=f"1555{i:07d}",
                                      msg_id=f"M{size}-{i}")
            self.files[wa.direct_path(ev)] = data
            raw = ev.SerializePartialToString()
            buffers.append((ctypes.create_string_buffer(raw, len(raw)), len(raw)))
        before = self.stored()
        began = time.perf_counter()
        for buf, n in buffers:
            self.client.event.execute(0, ctypes.addressof(buf), n, kind)
        wait_until(lambda: self.stored() >= before + count, 300, f"{count} files kept",
                   interval=0.005)
        elapsed = time.perf_counter() - began
        self.files.clear()
        media_dir = self.cfg.session_dir / "media"
        ids = sorted((p.stat().st_mtime, p.stem) for p in media_dir.glob("*.bin"))
        return elapsed, [i for _, i in ids[-count:]]

    def serve(self, ids: list[str], rounds: int) -> tuple[float, int]:
        """Seconds to GET every id `rounds` times, one request at a time; bytes read."""
        assert self.worker.http is not None
        base = f"http://127.0.0.1:{self.worker.http.port}/v1/media/"
        got = 0
        began = time.perf_counter()
        for _ in range(rounds):
            for media_id in ids:
                req = urllib.request.Request(base + media_id,
                                             headers={"Authorization": f"Bearer {TOKEN}"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    got += len(resp.read())
        return time.perf_counter() - began, got

    def stop(self) -> None:
        self.worker.stop(5.0)


def run(*, quick: bool = False) -> Result:
    res = Result("media_io", "Received media: take-in and serve throughput of one bot")
    res.note(__doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
    counts = {64 * 1024: 50 if quick else 200, 1024 * 1024: 10 if quick else 40,
              8 * 1024 * 1024: 2 if quick else 6}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wabot-bench-media-") as tmp_s:
        mw = MediaWorker(Path(tmp_s), quota=1024 * 1024 * 1024)
        try:
            mw.start()
            for size in SIZES:
                count = counts[size]
                label = f"{size // 1024} KiB" if size < 1024 * 1024 else f"{size >> 20} MiB"
                log(f"media io: {count} files of {label}")
                took, ids = mw.take_in(size, count)
                served_s, served = mw.serve(ids, rounds=3 if size < 8 << 20 else 2)
                out[label] = {"files": count, "take_in_s": took, "serve_s": served_s,
                              "served_bytes": served}
                res.add(f"take in {label} files: files/s", count / took, "files/s",
                        note=f"{count * size / took / 2**20:.1f} MiB/s, fsync'd")
                res.add(f"serve {label} files: MiB/s", served / served_s / 2**20, "MiB/s",
                        note=f"{served // size} requests, one at a time")
        finally:
            mw.stop()
    res.extra.update(out)
    return res


if __name__ == "__main__":
    import sys

    for m in run(quick="--quick" in sys.argv).metrics:
        print(f"{m.name}: {m.value} {m.unit}  {m.note}")
