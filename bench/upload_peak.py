"""Upload peak: the most memory a bot takes while it sends the largest files its API accepts,
and while it takes in the largest file spec.media.download accepts (issue 28: the memory
limit the chart gives a bot must be what these numbers justify).

`python -m bench.upload_peak` starts a real worker (`python -m wabot worker`, spec from a
file, SQLite beside the session) in a memory cgroup of its own (bench/cgroup.py), so the
start-up child (the SQLite migration) is charged to the same cgroup, as in a pod. WhatsApp is
unreachable; bench/_upload_hooks makes the worker connected and lets each upload run through
neonize's real `upload` (Go copies and encrypts the file) up to the network, the one seam.

Each send goes through the worker's own HTTP API with its token: a multipart upload (curl -F),
and the same file by URL from a loopback HTTP server (the egress policy's test allowance,
WABOT_WEBHOOK_ALLOW_CIDRS=127.0.0.1/32). Before each, the peaks are reset (VmHWM through
/proc/<pid>/clear_refs, the cgroup's memory.max_usage_in_bytes); after it, they are read.
Printed, in MiB: idle (VmRSS, cgroup usage), the cgroup's peak since start (the start-up
child), then per send the process's VmHWM and the cgroup's peak, and each above idle.

Each case runs in a fresh worker (--sequence: all in one, one after the other). Options:
--no-url skips the URL sends; --download N takes in a received document of N MiB (default
64, spec.media.maxBytes' largest; 0 skips); --limit N runs the worker under a cgroup memory
limit of N MiB (a pod's limit), where an OOM kill shows in the row.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

from bench.cgroup import MemoryCgroup
from bench.common import BENCH, REPO, Child, proc_status, python_env, wait_until
from tests.support.media_files import multipart
from tests.support.net import free_port

MIB = 1024 * 1024
TOKEN = "bench-upload-token-0123456789abcdef"
HOOKS = BENCH / "_upload_hooks"
SPEC = """serverName: acme
botId: uploads
media: {download: full, maxBytes: 67108864, quotaBytes: 1073741824}
"""


def document(size: int) -> bytes:
    """A `size`-byte PDF-looking file of random bytes (nothing compresses or dedupes it)."""
    head = b"%PDF-1.4\n"
    return head + os.urandom(size - len(head))


def video(size: int, workdir: Path) -> bytes:
    """An H.264 MP4 of noise just under `size` bytes (ffmpeg's -fs stops after the frame
    that crosses it, so it is lowered until the file fits), a valid file."""
    out = workdir / f"video-{size}.mp4"
    cut = size - 256 * 1024
    while not out.exists() or out.stat().st_size > size:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "nullsrc=s=320x240:r=25,geq=random(1)*255:128:128", "-t", "120",
                        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
                        "-fs", str(cut), "-movflags", "+faststart", str(out)],
                       check=True, timeout=600)
        cut -= 256 * 1024
    return out.read_bytes()


@contextmanager
def file_server(files: dict[str, bytes]) -> Iterator[str]:
    """A loopback HTTP server answering GET /<name> with files[name]."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Bot:
    """The measured worker: its process, its cgroup, its API."""

    def __init__(self, workdir: Path, cgroup: MemoryCgroup | None, limit_mb: int | None = None,
                 env_extra: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.cgroup = cgroup
        auth = workdir / "auth"
        auth.mkdir(parents=True, exist_ok=True)
        (workdir / "spec.yaml").write_text(SPEC)
        self.port = free_port()
        self.ready_file = workdir / "ready"
        self.trigger = workdir / "trigger"
        env = python_env({
            "BOT_ID": "uploads", "SERVER_NAME": "acme", "AUTH_DIR": str(auth),
            "HTTP_PORT": str(self.port), "HTTP_HOST": "127.0.0.1", "POD_NAME": "bench-upload",
            "WABOT_SPEC_SOURCE": f"file:{workdir / 'spec.yaml'}", "LOG_LEVEL": "INFO",
            "WABOT_API_TOKEN": TOKEN, "WABOT_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
            # Nothing listens there: the dial is refused on this machine.
            "WABOT_PROXY_URL": f"socks5://127.0.0.1:{free_port()}",
            "WABOT_BENCH_UPLOAD_READY": str(self.ready_file),
            "WABOT_BENCH_UPLOAD_TRIGGER": str(self.trigger),
        })
        env["PYTHONPATH"] = f"{HOOKS}{os.pathsep}{env['PYTHONPATH']}"
        from wabot import workerenv

        env.update(dict(getattr(workerenv, "RUNTIME_TUNING", ())))
        for name, value in (env_extra or {}).items():  # NAME= takes a setting away
            if value:
                env[name] = value
            else:
                env.pop(name, None)
        if cgroup is not None and limit_mb is not None:
            cgroup.set_limit(limit_mb * MIB)
        argv = [os.environ.get("WABOT_BENCH_PYTHON", "python3"), "-m", "wabot", "worker"]
        self.proc = Child(cgroup.wrap(argv) if cgroup else argv, env=env, cwd=REPO,
                          log=workdir / "worker.log")
        self._downloads = 0
        self._pending = Path()

    def wait_ready(self, timeout_s: float = 90) -> None:
        try:
            wait_until(lambda: self.ready_file.exists() or not self.proc.alive(), timeout_s,
                       "the worker connected (bench hook)")
        except TimeoutError:
            raise RuntimeError(f"the worker never connected:\n{self.proc.tail()}") from None
        if not self.proc.alive():
            raise RuntimeError(f"the worker exited:\n{self.proc.tail()}")

    def reading(self) -> dict[str, float]:
        st = proc_status(self.proc.pid)
        out = {"rss": st["VmRSS"] / 1024, "hwm": st["VmHWM"] / 1024}
        if self.cgroup is not None:
            mem = self.cgroup.read()
            out["cgroup"] = mem.get("cgroup_usage_mb", 0.0)
            out["cgroup_peak"] = mem.get("cgroup_max_usage_mb", mem.get("cgroup_peak_mb", 0.0))
            out.update({k: v for k, v in mem.items() if k == "cgroup_failcnt"})
        return out

    def reset_peaks(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        if self.cgroup is not None:
            self.cgroup.reset_peak()

    def post(self, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/messages", data=body, method="POST",
            headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}",
                     "Idempotency-Key": os.urandom(8).hex()})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
        except OSError as exc:  # the worker is gone (OOM-killed under --limit)
            return 0, {"error": f"{type(exc).__name__}: {exc}"}

    def prepare_download(self, size: int) -> None:
        """The hook makes a received document of `size` bytes (its own memory, before the
        peaks are reset)."""
        self._downloads += 1
        name = Path(f"{self.trigger}.download.{self._downloads}.{size}")
        name.write_text("")
        ready = Path(f"{name}.prepared")
        wait_until(lambda: ready.exists() or not self.proc.alive(), 120, "the file made")
        self._pending = name

    def download(self) -> tuple[int, dict[str, Any]]:
        """The prepared document, downloaded (the seam) and stored by the worker."""
        name = self._pending
        Path(f"{name}.go").write_text("")
        done = Path(f"{name}.done")
        wait_until(lambda: done.exists() or not self.proc.alive(), 180, "the download stored")
        if not self.proc.alive():
            raise RuntimeError(f"the worker exited:\n{self.proc.tail()}")
        answer: dict[str, Any] = json.loads(done.read_text())
        return (200 if answer.get("stored") == 1 else 500), answer

    def stop(self) -> None:
        self.proc.stop()


def measured(bot: Bot, label: str, act: Callable[[], tuple[int, dict[str, Any]]]
             ) -> dict[str, Any]:
    """One send (or download) by `bot`: its idle reading before, its peaks during."""
    if not bot.proc.alive():
        return {"case": label, "status": 0, "seconds": 0.0, "idle": {}, "hwm": 0.0,
                "hwm_over_idle": 0.0, "answer": {"worker": "died before this case"},
                "oom_kills": bot.cgroup.oom_kills() if bot.cgroup else None}
    idle = bot.reading()
    bot.reset_peaks()
    time.sleep(0.2)
    started = time.monotonic()
    status, answer = act()
    if not bot.proc.alive():
        return {"case": label, "status": status, "seconds": 0.0, "idle": idle, "hwm": 0.0,
                "hwm_over_idle": 0.0, "answer": {"worker": "died"},
                "oom_kills": bot.cgroup.oom_kills() if bot.cgroup else None}
    peak = bot.reading()
    row: dict[str, Any] = {"case": label, "status": status,
                           "seconds": round(time.monotonic() - started, 2), "idle": idle, **peak}
    if status != 200:
        row["answer"] = answer
    row["hwm_over_idle"] = peak["hwm"] - idle["rss"]
    if "cgroup_peak" in peak:
        row["cgroup_peak_over_idle"] = peak["cgroup_peak"] - idle["cgroup"]
    if bot.cgroup is not None:
        row["oom_kills"] = bot.cgroup.oom_kills()
    return row


Case = tuple[str, str, bytes, str, str]


def cases(workdir: Path, url: bool) -> list[Case]:
    """(label, kind, file, file name, its type) of every send measured."""
    doc16, doc32 = document(16 * MIB), document(32 * MIB)
    vid16 = video(16 * MIB, workdir)
    out = [("multipart document 16 MiB", "document", doc16, "a.pdf", "application/pdf"),
           ("multipart document 32 MiB", "document", doc32, "a.pdf", "application/pdf"),
           (f"multipart video {len(vid16) / MIB:.1f} MiB", "video", vid16, "v.mp4",
            "video/mp4")]
    if url:
        out += [("URL document 32 MiB", "document", doc32, "a.pdf", "application/pdf"),
                (f"URL video {len(vid16) / MIB:.1f} MiB", "video", vid16, "v.mp4",
                 "video/mp4")]
    return out


def send_case(bot: Bot, case: Case, url: str) -> Callable[[], tuple[int, dict[str, Any]]]:
    """What sending `case` is: its request to the worker's API (the file at `url` for a URL
    case)."""
    label, kind, data, name, ctype = case
    message: dict[str, Any] = {"to": "15550001111", kind: {}}
    if label.startswith("URL"):
        message[kind] = {"url": url}
        body = json.dumps(message).encode()
        return lambda: bot.post(body, "application/json")
    if kind == "document":
        message[kind] = {"fileName": name}
    # A random boundary: the document is random bytes, which a fixed one could occur in.
    body, content_type = multipart(json.dumps(message).encode(), data, filename=name,
                                   content_type=ctype,
                                   boundary="benchboundary" + os.urandom(8).hex())
    return lambda: bot.post(body, content_type)


def together(bot: Bot, parts: list[tuple[Case, str]]
             ) -> Callable[[], tuple[int, dict[str, Any]]]:
    """Several sends at once (the worker's media budget lets 48 MiB of files be sent at a
    time): the answer of the first that failed, else the last."""
    sends = [send_case(bot, case, url) for case, url in parts]

    def act() -> tuple[int, dict[str, Any]]:
        answers: list[tuple[int, dict[str, Any]]] = [(0, {})] * len(sends)

        def one(i: int) -> None:
            answers[i] = sends[i]()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(sends))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return next((a for a in answers if a[0] != 200), answers[-1])
    return act


def downloading(bot: Bot, size: int) -> Callable[[], tuple[int, dict[str, Any]]]:
    bot.prepare_download(size)
    return bot.download


@contextmanager
def started_bot(workdir: Path, limit_mb: int | None,
                env_extra: dict[str, str] | None = None) -> Iterator[Bot]:
    cgroup = MemoryCgroup.create("wabot-bench-upload")
    bot = Bot(workdir, cgroup, limit_mb, env_extra)
    try:
        bot.wait_ready()
        time.sleep(2)  # past the start-up child and the first status report
        yield bot
    finally:
        bot.stop()
        if cgroup is not None:
            cgroup.remove()


def run(*, url: bool = True, download_mb: int = 64, limit_mb: int | None = None,
        sequence: bool = False, env_extra: dict[str, str] | None = None,
        together_too: bool = True) -> dict[str, Any]:
    """Each case in a fresh worker (its peak over a bot that never sent a file), or with
    `sequence` every case one after the other in one worker (what a bot that keeps sending
    holds: the Go heap keeps what it grew to)."""
    rows: list[dict[str, Any]] = []
    startup: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wabot-upload-peak-") as tmp:
        todo = cases(Path(tmp), url)
        files = {f"f{i}": case[2] for i, case in enumerate(todo)}
        with file_server(files) as base:
            acts: list[tuple[str, Callable[[Bot], Callable[[], Any]]]] = [
                (case[0], partial(send_case, case=case, url=f"{base}/f{i}"))
                for i, case in enumerate(todo)]
            if together_too:
                by_label = {case[0]: (case, f"{base}/f{i}") for i, case in enumerate(todo)}
                doc32, vid = by_label[todo[1][0]], by_label[todo[2][0]]
                acts.append((f"at once: document 32 + {todo[2][0].split()[-2]} video",
                             partial(together, parts=[doc32, vid])))
                acts.append((f"at once: 3 x {todo[2][0].split()[-2]} MiB video",
                             partial(together, parts=[vid, vid, vid])))
            if download_mb:
                acts.append((f"received document {download_mb} MiB (stored)",
                             partial(downloading, size=download_mb * MIB)))
            groups = [acts] if sequence else [[a] for a in acts]
            for n, group in enumerate(groups):
                workdir = Path(tmp) / f"bot{n}"
                workdir.mkdir()
                with started_bot(workdir, limit_mb, env_extra) as bot:
                    startup.append(bot.reading().get("cgroup_peak", 0.0))
                    for label, make in group:
                        rows.append(measured(bot, label, make(bot)))
                        if not bot.proc.alive():
                            break
    return {"rows": rows, "startup_cgroup_peak": max(startup), "limit_mb": limit_mb,
            "sequence": sequence, "env": env_extra or {}}


def report(result: dict[str, Any]) -> None:
    rows = result["rows"]
    idle = rows[0]["idle"]
    print(f"idle: VmRSS {idle['rss']:.1f} MiB, cgroup {idle.get('cgroup', float('nan')):.1f} "
          f"MiB; cgroup peak at start (the start-up child beside the worker), the highest of "
          f"{len(rows) if not result['sequence'] else 1} start(s): "
          f"{result['startup_cgroup_peak']:.1f} MiB")
    mode = "one worker, one case after another" if result["sequence"] else "a fresh worker each"
    limit = "" if result["limit_mb"] is None else f", cgroup limit {result['limit_mb']} MiB"
    env = "".join(f", {k}={v}" for k, v in result["env"].items())
    print(f"({mode}{limit}{env})")
    print(f"{'case':<36} {'status':>6} {'VmHWM':>7} {'+idle':>7} {'cgroup peak':>11} "
          f"{'+idle':>7} {'s':>6}")
    for r in rows:
        print(f"{r['case']:<36} {r['status']:>6} {r['hwm']:>7.1f} {r['hwm_over_idle']:>7.1f} "
              f"{r.get('cgroup_peak', float('nan')):>11.1f} "
              f"{r.get('cgroup_peak_over_idle', float('nan')):>7.1f} {r['seconds']:>6.1f}"
              + (f"  OOM kills {r['oom_kills']}" if r.get("oom_kills") else ""))
        if "answer" in r:
            print(f"    answer: {r['answer']}")
    worst = max([r.get("cgroup_peak", 0.0) for r in rows] + [result["startup_cgroup_peak"]])
    print(f"worst cgroup peak: {worst:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upload_peak")
    parser.add_argument("--no-url", action="store_true")
    parser.add_argument("--download", type=int, default=64, metavar="MIB")
    parser.add_argument("--limit", type=int, default=None, metavar="MIB",
                        help="run the worker under this cgroup memory limit")
    parser.add_argument("--sequence", action="store_true",
                        help="every case in one worker, one after the other")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting in the worker's environment, NAME= to take one of "
                        "wabot/workerenv.py's away (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(url=not args.no_url, download_mb=args.download, limit_mb=args.limit,
                 sequence=args.sequence, env_extra=dict(e.split("=", 1) for e in args.env))
    if args.json:
        print(json.dumps(result, indent=1))
    report(result)


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        main()
