"""Pipeline: commands per second and latency from a neonize MessageEv to the send call.

The worker is the real one (`botworker.worker.Worker`, as tests/worker/conftest.py builds it):
neonize's own `NewClient`, its real event dispatcher, real `MessageEv` protobufs serialized
and handed to `client.event.execute(...)` exactly as neonize's Go side does. The one seam is
the network: a subclass of the client whose `send_message` records the time instead of
sending (the worker quotes the command with neonize's real `build_reply_message`, then calls
`send_message`). Sessions are not dialled; a `ConnectedEv` through the dispatcher opens
the send gate.

Each command is `!ping`. Latency = time from `execute()` to `send_message()`, per message,
`time.perf_counter()`. Two load shapes: one message at a time (the latency of a command on an
idle bot), and a window of 100 in flight (neonize's Go channel holds 100 events), which
gives the throughput.

Rate limits: the spec sets the highest limits the CRD allows (600 per chat and 6,000 per bot
per minute, bursts of a minute's allowance); messages rotate over 200 chats, each timed round
is at most 5,000 commands and gets a fresh limiter (full buckets) before it starts, outside the
timed region. The drop counter for `rate_limited` is reported and must be 0.

Baselines in the same run: (1) the bare dispatcher: the same bytes through `execute()` of
another client into a handler that only records the time (no queue, no thread); (2) the
dispatcher into a `queue.Queue` drained by one thread that records the time: the hand-off the
worker's design needs. The ratios show what the pipeline itself costs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    Result,
    at_least,
    at_most,
    cpu_seconds,
    log,
    percentile,
    ratio,
    wait_until,
)

CHATS = 200
ROUND = 5000
WINDOW = 100


class Recorder:
    """When each reply was sent, by the ID of the message it quotes."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.slots = threading.Semaphore(WINDOW)
        self.count = 0
        self._done = threading.Event()
        self._target = -1

    def reset(self, window: int, expect: int) -> None:
        self.sent = {}
        self.count = 0
        self.slots = threading.Semaphore(window)
        self._done.clear()
        self._target = expect

    def hit(self, key: str) -> None:
        self.sent[key] = time.perf_counter()
        self.count += 1
        self.slots.release()
        if self.count == self._target:
            self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


def recording_client(path: str, rec: Recorder) -> Any:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import SendResponse

    class BenchClient(NewClient):  # type: ignore[misc]
        def send_message(self, to: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            rec.hit(message.extendedTextMessage.contextInfo.stanzaID)
            return SendResponse(ID="S", Timestamp=0)

    return BenchClient(path)


class Events:
    """Serialized MessageEv bytes, built before any timing starts."""

    def __init__(self, count: int, prefix: str, text: str = "!ping") -> None:
        from neonize.events import EVENT_TO_INT, MessageEv
        from neonize.proto.Neonize_pb2 import MessageInfo, MessageSource
        from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
        from neonize.utils import build_jid

        self.kind = EVENT_TO_INT[MessageEv]
        self.ids: list[str] = []
        self.buffers: list[Any] = []
        now_ms = int(time.time() * 1000)
        for i in range(count):
            chat = f"1555{i % CHATS:07d}"
            msg_id = f"{prefix}{i:07d}"
            ev = MessageEv(
                Info=MessageInfo(
                    MessageSource=MessageSource(Chat=build_jid(chat), Sender=build_jid(chat),
                                                IsFromMe=False, IsGroup=False),
                    ID=msg_id, Pushname="Bench", Timestamp=now_ms),
                Message=Message(conversation=text))
            data = ev.SerializePartialToString()
            self.ids.append(msg_id)
            self.buffers.append((ctypes.create_string_buffer(data, len(data)), len(data)))

    def feed(self, client: Any, i: int) -> None:
        buf, n = self.buffers[i]
        client.event.execute(0, ctypes.addressof(buf), n, self.kind)


def drive(client: Any, events: Events, rec: Recorder, window: int,
          before_round: Callable[[], None] | None = None,
          timeout: float = 120.0) -> dict[str, Any]:
    """Feed every event keeping at most `window` unanswered; per-message latency and rate."""
    n = len(events.ids)
    sent_at: list[float] = [0.0] * n
    latencies: list[float] = []
    elapsed = 0.0
    for start in range(0, n, ROUND):
        stop = min(n, start + ROUND)
        if before_round is not None:
            before_round()
        rec.reset(window, stop - start)
        t_begin = time.perf_counter()
        for i in range(start, stop):
            rec.slots.acquire()
            sent_at[i] = time.perf_counter()
            events.feed(client, i)
        if not rec.wait(timeout):
            raise TimeoutError(f"only {rec.count} of {stop - start} commands answered")
        t_end = max(rec.sent.values())
        elapsed += t_end - t_begin
        for i in range(start, stop):
            latencies.append(rec.sent[events.ids[i]] - sent_at[i])
    ms = [x * 1000 for x in latencies]
    return {
        "commands": n,
        "per_s": n / elapsed if elapsed else None,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "mean_ms": sum(ms) / len(ms) if ms else None,
    }


# --- the systems under test ---------------------------------------------------------------------


class WorkerUnderTest:
    def __init__(self, tmp: Path, variant: str, database_url: str | None) -> None:
        from botworker.config import load_config
        from botworker.worker import Worker
        from wabot.spec import WhatsAppBotSpec

        self.rec = Recorder()
        env = {"BOT_ID": "bench", "SERVER_NAME": "acme", "AUTH_DIR": str(tmp / variant),
               "HTTP_PORT": "0", "HTTP_HOST": "127.0.0.1", "POD_NAME": f"bench-{variant}"}
        if database_url:
            env["DATABASE_URL"] = database_url
        self.cfg = load_config(env)
        self.cfg.session_dir.mkdir(parents=True, exist_ok=True)
        self.spec = WhatsAppBotSpec.model_validate({
            "serverName": "acme", "botId": "bench",
            "rateLimit": {"perChatPerMinute": 600, "perBotPerMinute": 6000}})
        self.client = recording_client(str(self.cfg.session_path), self.rec)
        self.worker = Worker(self.cfg, self.spec, client=self.client, sessions_enabled=False,
                             terminal=False, http=False)
        self.variant = variant
        self.no_audit = variant == "none"

    def start(self) -> None:
        from neonize.events import ConnectedEv

        w = self.worker
        if self.no_audit:
            # The "no database writes" variant: the pipeline simply has no audit writer.
            w.pipeline._audit = None
        w.start()
        data = ConnectedEv(status=True).SerializePartialToString()
        from neonize.events import EVENT_TO_INT

        buf = ctypes.create_string_buffer(data, len(data))
        self.client.event.execute(0, ctypes.addressof(buf), len(data), EVENT_TO_INT[ConnectedEv])
        wait_until(lambda: w.ready()[0], 10, "worker ready")
        if not self.no_audit:
            wait_until(lambda: w.datalayer.schema_ready, 120, "database schema")

    def fresh_limiter(self) -> None:
        from botworker.core.ratelimit import Limits, RateLimiter

        rl = self.spec.rate_limit
        self.worker.sender.limiter = RateLimiter(
            Limits(rl.per_chat_per_minute, rl.per_bot_per_minute))

    def dropped(self) -> dict[str, float]:
        m = self.worker.metrics
        return {r: m.value("wabot_messages_dropped_total", reason=r)
                for r in ("rate_limited", "queue_full", "not_connected", "send_failed",
                          "duplicate")}

    def audit_rows(self) -> int:
        """Audit rows committed to the database (read through a connection of our own)."""
        url = self.cfg.effective_database_url
        if url.startswith("sqlite:///"):
            import sqlite3

            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"),
                                                    timeout=10)) as conn:
                row = conn.execute("SELECT count(*) FROM audit_entry").fetchone()
                return int(row[0]) if row else 0
        return _audit_rows(url)

    def audit_drain(self, expected: int, timeout: float = 60.0) -> float:
        """Seconds until `expected` audit rows are committed to the database."""
        started = time.perf_counter()
        wait_until(lambda: self.audit_rows() >= expected, timeout,
                   f"{expected} audit rows committed", interval=0.01)
        return time.perf_counter() - started

    def stop(self) -> None:
        self.worker.stop(5.0)


class SpoolWatch:
    """The most audit rows waiting in the disk spool (the writer spills there when more than
    1,000 rows wait in memory) while a run goes on."""

    def __init__(self, wut: WorkerUnderTest) -> None:
        self._audit = wut.worker.audit
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-spool", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.most = max(self.most, int(getattr(self._audit, "_spooled", 0)))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(1)
        return self.most


def bare_dispatcher(tmp: Path, queued: bool) -> tuple[Any, Recorder, Callable[[], None]]:
    """Baselines: the same client class and dispatcher, a handler that only records."""
    from neonize.events import MessageEv

    rec = Recorder()
    client = recording_client(str(tmp / f"bare-{queued}.sqlite3"), rec)
    stop = threading.Event()
    if not queued:
        def handler(_c: Any, ev: Any) -> None:
            rec.hit(ev.Info.ID)

        client.event(MessageEv)(handler)
        keep = [handler]
        return client, rec, lambda: keep.clear()
    q: queue.Queue[Any] = queue.Queue(maxsize=1000)

    def enqueue(_c: Any, ev: Any) -> None:
        q.put_nowait(ev)

    def consume() -> None:
        while not stop.is_set():
            try:
                ev = q.get(timeout=0.2)
            except queue.Empty:
                continue
            rec.hit(ev.Info.ID)

    client.event(MessageEv)(enqueue)
    keep2 = [enqueue]
    t = threading.Thread(target=consume, name="bench-consumer", daemon=True)
    t.start()

    def close() -> None:
        stop.set()
        t.join(2)
        keep2.clear()

    return client, rec, close


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of each live Python thread of this process, by name. The
    worker's threads share one GIL: what each costs per command shows where throughput goes
    (docs/benchmarks/worker-pipeline.md). Linux only (/proc); empty elsewhere."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        if t.native_id is None:
            continue
        try:
            spent = cpu_seconds(os.getpid(), t.native_id)
        except OSError:  # ended since the listing
            continue
        out[t.name] = out.get(t.name, 0.0) + spent
    return out


def cpu_per_command_us(before: dict[str, float], after: dict[str, float],
                       commands: int) -> dict[str, float]:
    return {name: round((spent - before.get(name, 0.0)) * 1e6 / commands, 1)
            for name, spent in after.items() if spent > before.get(name, 0.0)}


def _audit_rows(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:  # the tenant's role: RLS shows it its own rows
        row = conn.execute("SELECT count(*) FROM audit_entry").fetchone()
        return int(row[0]) if row else 0


def run(*, n_throughput: int = 20000, n_latency: int = 5000, warmup: int = 500,
        pg_dsn: str | None = None) -> Result:
    res = Result("pipeline", "Pipeline: MessageEv -> dispatcher -> worker pipeline -> send")
    res.note("Real neonize client and dispatcher (`client.event.execute` with serialized "
             "MessageEv bytes, as neonize's Go side calls it); the send seam is a subclass of "
             "neonize's NewClient whose send_message records the time. Command `!ping`.")
    res.note("Rate limits set to the CRD's maxima (600/chat/min, 6000/bot/min), 200 chats, "
             f"rounds of <= {ROUND} commands each starting with full buckets (refilled outside "
             "the timed region): the limiter is on the path but never the bottleneck.")
    res.note(f"Throughput: a window of {WINDOW} messages in flight (neonize's channel buffer); "
             "latency: one message at a time. Latency is execute() -> send_message().")
    variants: list[tuple[str, str | None]] = [("none", None), ("sqlite", None)]
    if pg_dsn:
        variants.append(("postgres", pg_dsn))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wabot-bench-pipeline-") as tmp_s:
        tmp = Path(tmp_s)
        # Baselines first: they share nothing with the worker.
        for queued in (False, True):
            name = "baseline_queue_thread" if queued else "baseline_bare_dispatcher"
            log(f"pipeline: {name}")
            client, rec, close = bare_dispatcher(tmp, queued)
            try:
                drive(client, Events(warmup, f"W{name[:12]}"), rec, 1)
                thr = drive(client, Events(n_throughput, "T" + name[:12]), rec, WINDOW)
                lat = drive(client, Events(n_latency, "L" + name[:12]), rec, 1)
            finally:
                close()
            out[name] = {"throughput": thr, "latency": lat}
        for variant, dsn in variants:
            log(f"pipeline: worker ({variant} audit)")
            wut = WorkerUnderTest(tmp, variant, dsn)
            try:
                wut.start()
                audited = variant != "none"
                t0 = time.perf_counter()
                first = drive(wut.client, Events(1, f"F{variant}"), wut.rec, 1)
                cold_ms = (time.perf_counter() - t0) * 1000
                wut.fresh_limiter()
                drive(wut.client, Events(warmup, f"W{variant}"), wut.rec, WINDOW,
                      before_round=wut.fresh_limiter)
                done = 1 + warmup
                if audited:
                    wut.audit_drain(done)
                spool = SpoolWatch(wut)
                cpu_before = thread_cpu_s()
                thr = drive(wut.client, Events(n_throughput, f"T{variant}"), wut.rec, WINDOW,
                            before_round=wut.fresh_limiter)
                cpu = cpu_per_command_us(cpu_before, thread_cpu_s(), n_throughput)
                cpu.pop("bench-spool", None)  # the benchmark's own watcher, not the worker
                done += n_throughput
                drain_s = wut.audit_drain(done) if audited else 0.0
                spooled = spool.stop()
                lat = drive(wut.client, Events(n_latency, f"L{variant}"), wut.rec, 1,
                            before_round=wut.fresh_limiter)
                done += n_latency
                info: dict[str, Any] = {
                    "throughput": thr, "latency": lat, "first_command_ms": cold_ms,
                    "first_command_latency_ms": first["p50_ms"],
                    "audit_commit_after_throughput_s": drain_s,
                    "audit_rows_spooled_to_disk_max": spooled,
                    "dropped": wut.dropped(),
                    "cpu_us_per_command_by_thread": cpu,
                }
                if audited:
                    wut.audit_drain(done)
                    info["audit_rows_in_db"] = wut.audit_rows()
                    info["audit_rows_expected"] = done
                if thr["per_s"] and audited:
                    info["per_s_including_audit_commit"] = n_throughput / (
                        n_throughput / thr["per_s"] + drain_s)
                out[variant] = info
            finally:
                wut.stop()
    res.extra.update(out)
    base = out["baseline_bare_dispatcher"]
    baseq = out["baseline_queue_thread"]
    res.add("baseline: bare dispatcher -> no-op, per s", base["throughput"]["per_s"], "cmd/s")
    res.add("baseline: bare dispatcher latency p50", base["latency"]["p50_ms"], "ms")
    res.add("baseline: dispatcher -> queue -> thread, per s", baseq["throughput"]["per_s"],
            "cmd/s")
    res.add("baseline: dispatcher -> queue -> thread latency p50", baseq["latency"]["p50_ms"],
            "ms")
    for variant, _ in variants:
        v = out[variant]
        label = {"none": "no audit", "sqlite": "SQLite audit (default)",
                 "postgres": "PostgreSQL audit"}[variant]
        per_s = v["throughput"]["per_s"]
        if variant == "postgres":
            res.add(f"worker {label}: commands/s", per_s, "cmd/s", target=">= 2000",
                    met=at_least(per_s, 2000))
        else:
            res.add(f"worker {label}: commands/s", per_s, "cmd/s", target=">= 5000",
                    met=at_least(per_s, 5000))
        if "per_s_including_audit_commit" in v:
            res.add(f"worker {label}: commands/s incl. audit rows committed",
                    v["per_s_including_audit_commit"], "cmd/s",
                    note=f"until the last row was in the database; at most "
                    f"{v['audit_rows_spooled_to_disk_max']} rows went to the disk spool")
        p99 = v["latency"]["p99_ms"]
        res.add(f"worker {label}: latency p50 (one at a time)", v["latency"]["p50_ms"], "ms")
        res.add(f"worker {label}: latency p99 (one at a time)", p99, "ms",
                target="<= 2 ms" if variant != "postgres" else None,
                met=at_most(p99, 2.0) if variant != "postgres" else None)
        res.add(f"worker {label}: latency p99 (100 in flight)", v["throughput"]["p99_ms"], "ms",
                note="includes queueing behind up to 99 earlier messages")
        cpu = v["cpu_us_per_command_by_thread"]
        if cpu:
            res.add(f"worker {label}: CPU per command, all threads", sum(cpu.values()), "us",
                    note=", ".join(f"{k} {x:g}" for k, x in sorted(cpu.items())))
        res.add(f"ratio bare dispatcher/worker throughput ({label})",
                ratio(base["throughput"]["per_s"], per_s), "x")
        res.add(f"ratio worker/bare dispatcher latency p50 ({label})",
                ratio(v["latency"]["p50_ms"], base["latency"]["p50_ms"]), "x")
        dropped = v["dropped"]
        if any(dropped.values()):
            res.note(f"{variant}: drops {dropped}")
        if "audit_rows_in_db" in v:
            res.note(f"{variant}: {v['audit_rows_in_db']} audit rows in the database "
                     f"(expected {v['audit_rows_expected']})")
    return res
