"""Where the idle worker's memory goes: the profile behind bench/PROFILE-density.md.

    python -m bench.density_profile [--hold 20] [--out DIR]

Runs `python -m wabot worker` as the density benchmark does (WhatsApp unreachable, one failed
dial, then backoff) with the spec from a file and with `WABOT_SPEC_SOURCE=kubernetes` against a
local control plane, three times each:

1. plain, with `bench/_profile_hooks` on PYTHONPATH: VmRSS at the end of the hold, then the
   loaded modules, threads and /proc/self/smaps_rollup as the process sees them;
2. with tracemalloc (started before the first import): live Python allocations by package;
3. with `PYTHONPROFILEIMPORTTIME=1`: the import time of every module.

It prints what the kubernetes mode has on top of the file mode and writes everything to
DIR/profile.json. A profile, not a benchmark: the hook's own thread is in every run.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BENCH, REPO, log
from bench.density import kubernetes_worker_env, measure_worker

HOOKS = BENCH / "_profile_hooks"
_IMPORT = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _env(out: Path, hold_s: float, tracemalloc: bool = False) -> dict[str, str]:
    return {"PYTHONPATH": f"{HOOKS}:{REPO}", "WABOT_PROFILE_OUT": str(out),
            "WABOT_PROFILE_AFTER_S": str(hold_s - 1.0),
            "WABOT_PROFILE_TRACEMALLOC": "1" if tracemalloc else "0"}


def _imports(log_path: Path) -> dict[str, int]:
    """Top-level modules imported (their own import's cumulative time in us)."""
    top: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        m = _IMPORT.search(line)
        if m and len(m.group(3)) == 1:  # depth 0: imported directly by the program
            top[m.group(4)] = top.get(m.group(4), 0) + int(m.group(2))
    return top


def profile(variant: str, env: dict[str, str], hold_s: float, work: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}
    dump = work / f"{variant}-plain.json"
    res["plain"] = measure_worker(f"{variant}-plain", {**env, **_env(dump, hold_s)},
                                  hold_s, work)
    res["plain"]["dump"] = json.loads(dump.read_text())
    dump = work / f"{variant}-tm.json"
    # The snapshot takes seconds: it is taken at the same point, the process lives longer.
    measure_worker(f"{variant}-tm", {**env, **_env(dump, hold_s + 1.0, True)}, hold_s + 20.0,
                   work)
    res["tracemalloc_kb"] = json.loads(dump.read_text())["tracemalloc_kb"]
    dump = work / f"{variant}-it.json"
    measure_worker(f"{variant}-it", {**env, **_env(dump, hold_s),
                                     "PYTHONPROFILEIMPORTTIME": "1"}, hold_s, work)
    res["import_us"] = _imports(work / f"worker-{variant}-it.log")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hold", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="density-prof-")))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wabot-density-prof-") as tmp:
        work = Path(tmp)
        log("profile: file spec")
        results["file"] = profile("file", {}, args.hold, work)
        with kubernetes_worker_env() as env:
            log("profile: kubernetes spec source")
            results["kubernetes"] = profile("kubernetes", env, args.hold, work)
    (args.out / "profile.json").write_text(json.dumps(results, indent=1))
    report(results)
    print(f"\nwrote {args.out / 'profile.json'}")


def report(r: dict[str, Any]) -> None:
    f, k = r["file"], r["kubernetes"]
    print("\n== RSS at the end of the hold (MiB)")
    for name, v in (("file", f), ("kubernetes", k)):
        p = v["plain"]
        s = p["dump"]["smaps_rollup_kb"]
        print(f"{name:11s} rss {p['rss_mb']:.1f}  anon {p['rss_anon_mb']:.1f}  "
              f"file {p['rss_file_mb']:.1f}  pss {s['Pss'] / 1024:.1f}  "
              f"private_dirty {s['Private_Dirty'] / 1024:.1f}  threads {p['threads']}  "
              f"modules {len(p['dump']['modules'])}")
    extra = sorted(set(k["plain"]["dump"]["modules"]) - set(f["plain"]["dump"]["modules"]))
    tops: dict[str, int] = {}
    for m in extra:
        tops[m.split(".")[0]] = tops.get(m.split(".")[0], 0) + 1
    print(f"\n== modules only in the kubernetes mode: {len(extra)}")
    print("  " + ", ".join(f"{t} {n}" for t, n in sorted(tops.items(), key=lambda kv: -kv[1])))
    print("\n== threads\n  file:       " + ", ".join(f["plain"]["dump"]["threads"])
          + "\n  kubernetes: " + ", ".join(k["plain"]["dump"]["threads"]))
    print("\n== tracemalloc: live Python allocations, kubernetes - file (KiB)")
    keys = set(f["tracemalloc_kb"]) | set(k["tracemalloc_kb"])
    diff = {key: k["tracemalloc_kb"].get(key, 0) - f["tracemalloc_kb"].get(key, 0)
            for key in keys}
    tot_f, tot_k = sum(f["tracemalloc_kb"].values()), sum(k["tracemalloc_kb"].values())
    print(f"  total: file {tot_f} KiB, kubernetes {tot_k} KiB")
    for key, d in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:20]:
        print(f"  {key:45s} {d:+7d}")
    print("\n== import time (cumulative, top-level imports only in the kubernetes mode, ms)")
    only = {m: us for m, us in k["import_us"].items() if m not in f["import_us"]}
    for m, us in sorted(only.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {m:45s} {us / 1000:7.1f}")


if __name__ == "__main__":
    main()
