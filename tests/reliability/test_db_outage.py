"""4. A database outage under load.

A worker (real pipeline, real neonize client with the send recorded) on a PostgreSQL server of
this test's own, as the tenant's own role (made by `provision`), takes a steady stream of
commands (a database write, a database read, a ping that needs no database, an unknown
command) from many chats. The server
is stopped for the outage (10 s at CI size, 60 s at full size) and started again, the load
running all the while. Then: every command answered (database commands with the clear "try
again later" text while it is down, never the generic failure), the WhatsApp connection state
untouched, readiness as the code defines it, wabot_db_up showing the outage, and every audit
row in the database at the end — none lost, none twice.
"""

from __future__ import annotations

import importlib
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from botworker.core.context import DB_UNAVAILABLE_TEXT, FAILED_TEXT
from botworker.worker import Worker
from tests.reliability import figures, sizes
from tests.reliability.pg import migrated_database, own_server, rows, tenant_role
from tests.worker.conftest import (
    PLUGIN_DIR,
    dispatch,
    message_ev,
    recording_client,
    wait_for,
    worker_config,
)
from wabot.spec import WhatsAppBotSpec, WorkerState

SECTION = "db_outage"
pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.timeout(300 + 3 * sizes.OUTAGE_SECONDS)]

RATE_PER_S = 40  # commands per second, spread over CHATS chats
CHATS = 200
WARMUP_S, AFTER_S = 6.0, 8.0


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_database_outage_under_load_loses_no_audit_row_and_keeps_whatsapp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures.section(SECTION, f"4. Database outage under load ({sizes.OUTAGE_SECONDS} s)")
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    importlib.invalidate_caches()
    with own_server() as server:
        # As production runs it: migrated by the owner role, the worker as its tenant's role.
        dsn = tenant_role(migrated_database(server, "outage"), "tenant-o")
        admin = server.dsn("outage")
        spec = WhatsAppBotSpec.model_validate({
            "serverName": "tenant-o", "botId": "bot-o",
            "rateLimit": {"perChatPerMinute": 600, "perBotPerMinute": 6000},
            "commands": {"plugins": ["notes"]},
        })
        cfg = worker_config(tmp_path / "bot", "bot-o", "tenant-o", DATABASE_URL=dsn)
        cfg.session_dir.mkdir(parents=True, exist_ok=True)
        client = recording_client(str(cfg.session_path.parent / "session.sqlite3"))
        worker = Worker(cfg, spec, client=client, sessions_enabled=False, terminal=False)
        replies: dict[str, tuple[float, str]] = {}  # quoted message id -> (time, text)
        send = client.send_message

        def timed_send(to: Any, message: Any, *a: Any, **kw: Any) -> Any:
            replies[message.extendedTextMessage.contextInfo.stanzaID] = (
                time.monotonic(), message.extendedTextMessage.text or message.conversation)
            return send(to, message, *a, **kw)

        client.send_message = timed_send
        worker.start()
        try:
            from neonize.events import ConnectedEv

            dispatch(client, ConnectedEv(status=True))
            wait_for(lambda: worker.ready()[0], what="worker ready")
            wait_for(worker.datalayer.ensure_schema, timeout=60, what="database schema")
            assert worker.http is not None
            readyz = f"http://127.0.0.1:{worker.http.port}/readyz"
            reconnects_before = worker.metrics.value("wabot_reconnects_total")

            sent: dict[str, tuple[float, str]] = {}  # message id -> (time, kind)
            stop_load = threading.Event()
            load_errors: list[BaseException] = []

            def load() -> None:
                i = 0
                next_at = time.monotonic()
                kinds = ["write", "read", "ping", "unknown"]
                try:
                    while not stop_load.is_set():
                        kind = kinds[i % 4]
                        text = {"write": f"!note k{i % 50} value {i}", "read": f"!note k{i % 50}",
                                "ping": "!ping", "unknown": "!nope"}[kind]
                        mid = f"OUT{i:07d}"
                        sent[mid] = (time.monotonic(), kind)
                        dispatch(client, message_ev(text, chat=f"1555100{i % CHATS:04d}",
                                                    msg_id=mid))
                        i += 1
                        next_at += 1.0 / RATE_PER_S
                        time.sleep(max(0.0, next_at - time.monotonic()))
                except BaseException as e:  # reported by the test
                    load_errors.append(e)

            samples: list[tuple[float, WorkerState, bool, int, float, float, bool]] = []
            stop_sampling = threading.Event()

            def sample() -> None:
                while not stop_sampling.is_set():
                    st = worker.connection.state
                    samples.append((time.monotonic(), st.state, worker.ready()[0],
                                    http_status(readyz), worker.metrics.value("wabot_db_up"),
                                    worker.metrics.value("wabot_audit_spool_rows"),
                                    cfg.spool_path.exists()))
                    stop_sampling.wait(0.25)

            loader = threading.Thread(target=load, daemon=True)
            sampler = threading.Thread(target=sample, daemon=True)
            loader.start()
            sampler.start()
            time.sleep(WARMUP_S)
            t_stop = time.monotonic()
            server.stop("fast")
            stopped_in = time.monotonic() - t_stop
            time.sleep(max(0.0, sizes.OUTAGE_SECONDS - stopped_in))
            t_start = time.monotonic()
            server.start()
            server.wait_ready()
            t_up = time.monotonic()
            time.sleep(AFTER_S)
            stop_load.set()
            loader.join(10)
            t_load_end = time.monotonic()
            wait_for(lambda: len(replies) >= len(sent) and worker.pipeline.idle(), timeout=60,
                     what="every command answered")
            wait_for(lambda: worker.metrics.value("wabot_audit_spool_rows") == 0, timeout=90,
                     what="the audit spool drained")
            t_drained = time.monotonic()
            stop_sampling.set()
            sampler.join(10)
            reconnects = worker.metrics.value("wabot_reconnects_total") - reconnects_before
            spool_drops = worker.metrics.value("wabot_messages_dropped_total",
                                               reason="audit_spool_full")
        finally:
            worker.stop(10.0)

        in_db = rows(admin, "SELECT count(*), count(DISTINCT id) FROM audit_entry "
                            "WHERE server_name = 'tenant-o' AND bot_id = 'bot-o'")[0]
        by_result = dict(rows(admin, "SELECT command || ':' || result, count(*) FROM "
                                     "audit_entry GROUP BY 1"))

    # --- what happened, by phase ------------------------------------------------------------
    t_down = t_stop + stopped_in  # pg_ctl -w returned: the server is gone

    def phase(t: float) -> str:
        """before | edge (stopping, starting, fail-fast window) | outage | after"""
        if t < t_stop:
            return "before"
        if t_down <= t < t_start:
            return "outage"
        if t >= t_up + 3.0:  # Database fails fast for 2 s after a failure, then retries
            return "after"
        return "edge"

    answers: Counter[tuple[str, str, str]] = Counter()
    unanswered = [mid for mid in sent if mid not in replies]
    ping_latency: dict[str, list[float]] = {"before": [], "outage": [], "after": [],
                                            "edge": []}
    for mid, (t, kind) in sent.items():
        if mid not in replies:
            continue
        t_reply, text = replies[mid]
        cls = ("unavailable" if text == DB_UNAVAILABLE_TEXT else "failed" if text == FAILED_TEXT
               else "pong" if text.startswith("pong") else "unknown" if text.startswith(
                   "Unknown command") else "ok")
        answers[(phase(t), kind, cls)] += 1
        if kind == "ping":
            ping_latency[phase(t)].append(t_reply - t)
    outage_db = Counter(c for (p, k, c), n in answers.items() if p == "outage"
                        and k in ("write", "read") for _ in range(n))
    after_db = Counter(c for (p, k, c), n in answers.items() if p == "after"
                       and k in ("write", "read") for _ in range(n))
    first_unavailable = min((replies[mid][0] for mid, (t, kind) in sent.items()
                             if kind in ("write", "read") and mid in replies
                             and replies[mid][1] == DB_UNAVAILABLE_TEXT), default=None)
    first_ok_after = min((replies[mid][0] for mid, (t, kind) in sent.items() if t >= t_start
                          and kind == "write" and mid in replies
                          and replies[mid][1].startswith("Saved note")), default=None)
    spool_file_gone = min((s[0] for s in samples if s[0] >= t_start and not s[6]),
                          default=None)
    out_samples = [s for s in samples if t_stop + 3 <= s[0] < t_start]
    expected_rows = sum(1 for _ in sent)  # every command leaves one audit row
    states = Counter(s[1].value for s in samples)
    ready_out = sum(1 for s in out_samples if s[2] and s[3] == 200)
    db_down_out = sum(1 for s in out_samples if s[4] == 0)
    most_spooled = max((s[5] for s in samples), default=0)

    figures.record(SECTION, "load", f"{RATE_PER_S} commands/s over {CHATS} chats "
                   "(note write, note read, ping, unknown), "
                   f"{len(sent)} commands in {t_load_end - (t_stop - WARMUP_S):.0f} s")
    figures.record(SECTION, "outage", f"server stopped {t_start - t_stop:.1f} s "
                   f"(+{t_up - t_start:.1f} s to accept connections)")
    figures.record(SECTION, "commands answered", f"{len(sent) - len(unanswered)}/{len(sent)}")
    figures.record(SECTION, "database commands answered during the outage / after it",
                   ", ".join(f"{c} {n}" for c, n in outage_db.items()) + " / " +
                   ", ".join(f"{c} {n}" for c, n in after_db.items()))
    figures.record(SECTION, "generic failure answers (should be the clear error)",
                   sum(n for (_, _, c), n in answers.items() if c == "failed"))
    figures.record(SECTION, "first 'unavailable' answer after the stop",
                   f"{first_unavailable - t_stop:.2f} s" if first_unavailable else "none")
    figures.record(SECTION, "first successful write after the start",
                   f"{first_ok_after - t_start:.2f} s (accepting connections after "
                   f"{t_up - t_start:.2f} s)" if first_ok_after else "none")
    figures.record(SECTION, "ping reply latency p50/p99/max (before / outage / after)",
                   " / ".join(f"{percentile(v, .5) * 1000:.0f}/{percentile(v, .99) * 1000:.0f}/"
                              f"{max(v, default=0) * 1000:.0f} ms"
                              for k, v in ping_latency.items() if k != "edge"))
    figures.record(SECTION, "WhatsApp connection state in samples",
                   ", ".join(f"{k} {n}" for k, n in states.items()) +
                   f"; reconnects {int(reconnects)}")
    figures.record(SECTION, "/readyz 200 during the outage (connected + Lease, by design)",
                   f"{ready_out}/{len(out_samples)} samples")
    figures.record(SECTION, "wabot_db_up = 0 during the outage",
                   f"{db_down_out}/{len(out_samples)} samples; 1 at the end")
    figures.record(SECTION, "audit rows: expected / in the database (distinct ids)",
                   f"{expected_rows} / {in_db[0]} ({in_db[1]})")
    figures.record(SECTION, "audit rows spooled at most / dropped (spool full)",
                   f"{int(most_spooled)} / {int(spool_drops)}")
    figures.record(SECTION, "recovery: spool file replayed and removed, under load",
                   f"{spool_file_gone - t_start:.1f} s after the start" if spool_file_gone
                   else f"only after the load stopped ({t_drained - t_start:.1f} s)")
    figures.note(SECTION, "readiness is connected + Lease "
                 "(botworker/runtime/health_server.py: a degraded "
                 "database does not take the bot out of service); the database state is "
                 "wabot_db_up")

    assert load_errors == []
    assert unanswered == [], unanswered[:5]
    assert not any(c == "failed" for (_, _, c) in answers), answers
    assert outage_db and set(outage_db) == {"unavailable"}, answers
    assert after_db and set(after_db) == {"ok"}, answers
    assert first_unavailable is not None and first_ok_after is not None
    assert spool_file_gone is not None, "the spool was not replayed while the load went on"
    assert set(states) == {"Connected"} and reconnects == 0
    assert out_samples and ready_out == len(out_samples)
    assert db_down_out == len(out_samples)
    assert worker.metrics.value("wabot_db_up") == 1
    assert in_db[0] == in_db[1] == expected_rows
    assert spool_drops == 0
    assert sum(n for k, n in by_result.items()) == expected_rows

