"""The benchmark harness works: each benchmark at its tiniest size produces numbers.

Nothing here checks a target or a speed; `python -m bench` is where the numbers are read. These
only prove that every benchmark runs end to end and reports positive, finite values.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from bench.common import Result
from devcluster.postgres import PostgresServer

pytestmark = pytest.mark.slow


def values(res: Result) -> dict[str, float]:
    assert res.error is None, res.error
    got = {m.name: m.value for m in res.metrics if m.value is not None}
    assert got, "no numbers"
    return got


def sane(x: float) -> bool:
    return math.isfinite(x) and x > 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_density_smoke() -> None:
    from bench import density

    res = density.run(hold_s=2.0, container=False, mixed=2000)
    got = values(res)
    assert sane(got["Baileys (Node, 1 socket) RSS"])
    assert sane(got["worker RSS idle (file spec, SQLite)"])
    assert sane(got["ratio idle worker/Baileys (file spec, SQLite)"])
    sqlite = res.extra["workers"]["sqlite"]
    assert sqlite["dial_attempts"] >= 1
    worked = sqlite["after_commands"]
    stages = density.STAGES + density.MEDIA_STAGES
    assert [w["texts"] for w in worked] == [list(stage) for stage in stages]
    assert all(w["handled"] == w["expected"] and w["audit_pending"] == 0 and sane(w["rss_mb"])
               for w in worked)
    # Each received file was downloaded (at the seam) and stored, and read after.
    assert [w["media_stored"] for w in worked[len(density.STAGES):]] == [1] * 6
    assert "a received voice (1 MiB, stored)" in " ".join(got)
    mixed = sqlite["mixed"]
    assert mixed["handled"] == mixed["commands"] == 2000
    assert [p["commands"] for p in mixed["points"]] == [0, 1000, 2000]


@pytest.mark.postgres
def test_pipeline_smoke(postgres: PostgresServer) -> None:
    from bench import pipeline
    from bench.pg import BenchPostgres

    pg = BenchPostgres()
    pg.server = postgres  # the session's server; BenchPostgres adds the owner and tenant roles
    dsn = pg.tenant_database("acme", "smoke")
    res = pipeline.run(n_throughput=200, n_latency=50, warmup=10, pg_dsn=dsn)
    got = values(res)
    for variant in ("no audit", "SQLite audit (default)", "PostgreSQL audit"):
        assert sane(got[f"worker {variant}: commands/s"])
        assert sane(got[f"worker {variant}: latency p99 (one at a time)"])
    assert sane(got["baseline: bare dispatcher -> no-op, per s"])
    assert res.extra["postgres"]["audit_rows_in_db"] == res.extra["postgres"][
        "audit_rows_expected"]
    for variant in ("none", "sqlite", "postgres"):
        assert res.extra[variant]["dropped"]["rate_limited"] == 0


@pytest.mark.cluster
def test_operator_scale_and_restart_smoke() -> None:
    from bench import operator_scale

    scale, restart = operator_scale.run(sizes=(5,), modes=("burst",), restart_n=5, nodes=1,
                                              restart_kinds=("pods", "image"))
    got = values(scale)
    assert sane(got["N=5, all at once: settled (operator)"])
    assert sane(got["N=5, all at once: settled (raw baseline)"])
    assert sane(got["N=5, all at once: apply -> pod p99 (operator)"])
    assert sane(got["N=5, all at once: operator peak RSS (VmHWM)"])
    assert sane(got["N=5, all at once: operator API requests"])
    assert restart is not None
    rgot = values(restart)
    assert sane(rgot["all pods deleted: operator API requests peak"])
    assert sane(rgot["new worker image (operator restarted): every bot on a new Running pod "
                     "after"])
    assert sane(rgot["new worker image (operator restarted): operator peak RSS (VmHWM)"])


def test_reconnect_simulation_smoke() -> None:
    from bench import reconnect

    res = reconnect.run(50, horizon_s=60.0, stored=None)  # paced starts: one every 0.25 s
    got = values(res)
    assert res.extra["restart_reachable"]["attempts"] == 50  # one dial each
    assert sane(got["all start at once, WhatsApp unreachable: dials mean over 60 s"])
    assert sane(got["WHAT-IF previous policy (first dial at once, full jitter from 1 s): restart "
                    "during a WhatsApp outage: dials peak (1 s window)"])


def test_reports_are_written(tmp_path: Path) -> None:
    from bench.common import machine
    from bench.report import to_json, to_markdown

    res = Result("x", "X")
    res.add("a number", 1.5, "ms", target="<= 2 ms", met=True)
    meta = {"command": "python -m bench --quick", "mode": "quick", "started": "now",
            "git": "abc", "machine": machine(), "total_s": 1.0}
    to_json([res], meta, tmp_path / "results.json")
    md = to_markdown([res], meta)
    assert "| a number | 1.50 | ms | <= 2 ms: met |" in md
    assert (tmp_path / "results.json").read_text().startswith("{")


def test_thread_cpu_is_charged_to_the_thread_that_spent_it() -> None:
    import threading
    import time

    from bench.pipeline import cpu_per_command_us, thread_cpu_s

    spun, release = threading.Event(), threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        spun.set()
        release.wait(30)  # stay alive (and listed) until measured

    burner = threading.Thread(target=spin, name="burner")
    before = thread_cpu_s()
    burner.start()
    assert spun.wait(30)
    after = thread_cpu_s()
    release.set()
    burner.join()
    per = cpu_per_command_us(before, after, 1000)
    assert 250 <= per["burner"] <= 400  # 0.3 s over 1,000 commands, at the clock tick's grain
    assert per.get("MainThread", 0.0) < 100  # this thread waited
