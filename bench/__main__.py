"""`python -m bench`: run the benchmarks, print numbers and ratios against same-run baselines,
write bench/results.json and bench/RESULTS.md.

    python -m bench                       # everything, full sizes (< 20 min)
    python -m bench --quick               # everything, small sizes (< 3 min)
    python -m bench --only pipeline       # one (or a comma list): density, pipeline,
                                          #   operator, restart, reconnect
    python -m bench --only operator --sizes 100,500 --modes burst

Benchmarks, not tests: nothing here asserts a target; targets are printed as met or missed.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH,
    REPO,
    MachineMeter,
    Result,
    log,
    machine,
    stop_all_children,
)

ALL = ("density", "pipeline", "operator", "restart", "reconnect")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (the whole run < 3 min)")
    p.add_argument("--only", default=",".join(ALL),
                   help=f"comma list of benchmarks ({', '.join(ALL)})")
    p.add_argument("--sizes", help="operator scale: comma list of N (default 100,500,1000; "
                   "quick 50)")
    p.add_argument("--modes", help="operator scale: rate (20/s), burst (all at once); "
                   "default both")
    p.add_argument("--restart-size", type=int,
                   help="fleet restart: N bots (default: the largest scale size)")
    p.add_argument("--restart", choices=("pods", "image", "both"), default="pods",
                   help="fleet restart: delete every bot pod (default), roll a new worker image "
                   "(operator restarted with another image: every pod replaced), or both")
    p.add_argument("--no-baseline", action="store_true",
                   help="operator scale: skip the raw-object baseline runs (what-if runs)")
    p.add_argument("--nodes", type=int, default=4, help="kwok nodes (default 4)")
    p.add_argument("--stock-control-plane", action="store_true",
                   help="run the control plane without the raised controller-manager/scheduler "
                   "client limits")
    p.add_argument("--operator-path", type=Path,
                   help="what-if: run the wabot_operator package found in this directory "
                   "instead of the repo's (operator benchmarks)")
    p.add_argument("--messages", type=int, help="pipeline: commands in the throughput run "
                   "(default 20000; quick 3000)")
    p.add_argument("--hold", type=float, help="density: seconds after start before reading RSS "
                   "(default 20, past V8's first major GC in the Baileys baseline; quick 8)")
    p.add_argument("--mixed", type=int, help="density: mixed commands after the stages, with a "
                   "memory reading every 1,000 (default 10000; quick 2000)")
    p.add_argument("--with-image", action="store_true",
                   help="density: build localhost/wabot-worker:test if it is missing")
    p.add_argument("--out", type=Path, default=BENCH,
                   help="directory for results.json and RESULTS.md (default bench/)")
    return p


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                              text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "botworker", "operator",
                "wabot")
    return f"{head}{' + uncommitted changes in botworker/operator/wabot' if dirty else ''}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in only if b not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}",
              file=sys.stderr)
        return 2
    quick = args.quick
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else (
        (50,) if quick else (100, 500, 1000))
    modes = tuple(args.modes.split(",")) if args.modes else ("rate", "burst")
    if any(m not in ("rate", "burst") for m in modes):
        print("--modes takes rate and/or burst", file=sys.stderr)
        return 2
    messages = args.messages or (3000 if quick else 20000)
    hold = args.hold or (8.0 if quick else 20.0)

    # neonize configures logging at import; the benchmarks print their own lines.
    logging.basicConfig(level=logging.WARNING, force=True)
    atexit.register(stop_all_children)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    meta: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": "quick" if quick else "full",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": _git(),
        "machine": machine(),
        "options": {"sizes": sizes, "modes": modes, "messages": messages, "hold_s": hold,
                    "nodes": args.nodes, "tuned_control_plane": not args.stock_control_plane,
                    "operator_path": str(args.operator_path or ""),
                    "restart": args.restart, "baseline": not args.no_baseline},
    }
    results: list[Result] = []
    pg: Any = None
    restart_starts: list[float] = []

    def postgres() -> Any:
        nonlocal pg
        if pg is None:
            from bench.pg import BenchPostgres

            log("starting a throwaway PostgreSQL")
            pg = BenchPostgres().start()
        return pg

    def timed(name: str, fn: Callable[[], Result | list[Result]]) -> None:
        log(f"== {name}")
        meter = MachineMeter()
        t0 = time.monotonic()
        try:
            out = fn()
            got = out if isinstance(out, list) else [out]
        except Exception as e:
            traceback.print_exc()
            got = [Result(name, name, error=f"{type(e).__name__}: {e}"[:1000])]
        for r in got:
            r.seconds = time.monotonic() - t0
            r.extra["machine"] = meter.read()
        results.extend(got)

    try:
        if "density" in only:
            from bench import density

            def run_density() -> Result:
                dsn = postgres().tenant_database("acme", "density")
                mixed = args.mixed if args.mixed is not None else (2000 if quick else 10_000)
                return density.run(hold_s=hold, pg_dsn=dsn, with_image=args.with_image,
                                   mixed=mixed)

            timed("density", run_density)
        if "pipeline" in only:
            from bench import pipeline

            def run_pipeline() -> Result:
                dsn = postgres().tenant_database("acme", "pipeline")
                return pipeline.run(n_throughput=messages,
                                    n_latency=1000 if quick else 5000,
                                    warmup=200 if quick else 500, pg_dsn=dsn)

            timed("pipeline", run_pipeline)
            from bench import pipeline_kinds

            # Every kind of message against text only, alternating rounds (issue 24).
            timed("pipeline_kinds", lambda: pipeline_kinds.run(n=2000 if quick else 4000,
                                                              repeats=5 if quick else 9))
            from bench import media_io

            # Received media: one bot's take-in and serve throughput (issue 24).
            timed("media_io", lambda: media_io.run(quick=quick))
        if pg is not None:
            pg.stop()
            pg = None
        if "operator" in only or "restart" in only:
            from bench import operator_scale

            def run_operator() -> list[Result]:
                run_sizes = sizes if "operator" in only else ()
                restart_n = (args.restart_size or max(sizes)) if "restart" in only else None
                scale, restart = operator_scale.run(
                    sizes=run_sizes, modes=modes, restart_n=restart_n, nodes=args.nodes,
                    tuned=not args.stock_control_plane, operator_path=args.operator_path,
                    restart_kinds=("pods", "image") if args.restart == "both" else (
                        args.restart,), baseline=not args.no_baseline)
                out: list[Result] = [scale] if run_sizes else []
                if restart is not None:
                    for kind in ("new_image", "pods_deleted"):
                        times = restart.extra.get(kind, {}).get("pod_running_times_s")
                        if times and not restart_starts:
                            restart_starts.extend(times)
                    out.append(restart)
                return out

            timed("operator", run_operator)
        if "reconnect" in only:
            from bench import reconnect

            # Always 1,000 workers: the simulation is cheap, and that is the fleet in question.
            timed("reconnect", lambda: reconnect.run(1000, starts=restart_starts or None))
    finally:
        if pg is not None:
            pg.stop()
        stop_all_children()

    meta["total_s"] = time.monotonic() - started
    from bench.report import print_summary, to_json, to_markdown

    args.out.mkdir(parents=True, exist_ok=True)
    to_json(results, meta, args.out / "results.json")
    (args.out / "RESULTS.md").write_text(to_markdown(results, meta))
    print_summary(results)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'RESULTS.md'} "
          f"({meta['total_s']:.0f} s)")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
