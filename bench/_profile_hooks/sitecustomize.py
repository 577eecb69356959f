"""Profiling hook for `python -m bench.density_profile` (on PYTHONPATH of the profiled worker
only): after WABOT_PROFILE_AFTER_S seconds it writes what the process holds to
WABOT_PROFILE_OUT as JSON: the loaded modules, the threads, /proc/self/smaps_rollup, and with
WABOT_PROFILE_TRACEMALLOC=1 the Python allocations still live, by top-level package (tracemalloc
is started here, before anything else is imported, so imports are attributed too; it costs
memory of its own, so RSS is read from runs without it)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

_OUT = os.environ.get("WABOT_PROFILE_OUT")
if _OUT:
    if os.environ.get("WABOT_PROFILE_TRACEMALLOC") == "1":
        import tracemalloc

        tracemalloc.start(1)

    def _package(filename: str) -> str:
        if "site-packages/" in filename:
            return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        if "/lib/python3" in filename:
            rest = filename.split("/lib/python3", 1)[1].split("/", 2)
            return "stdlib:" + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
        for top in ("botworker", "wabot"):
            if f"/{top}/" in filename:
                return top
        return filename if filename.startswith("<") else "other"

    def _dump() -> None:
        time.sleep(float(os.environ.get("WABOT_PROFILE_AFTER_S", "20")))
        out: dict[str, object] = {
            "modules": sorted(sys.modules),
            "threads": sorted(t.name for t in threading.enumerate()),
        }
        with open("/proc/self/smaps_rollup") as f:
            out["smaps_rollup_kb"] = {
                line.split(":")[0]: int(line.split()[1])
                for line in f if line.rstrip().endswith("kB")
            }
        if os.environ.get("WABOT_PROFILE_TRACEMALLOC") == "1":
            import tracemalloc

            by: dict[str, int] = {}
            for stat in tracemalloc.take_snapshot().statistics("filename"):
                key = _package(stat.traceback[0].filename)
                by[key] = by.get(key, 0) + stat.size
            out["tracemalloc_kb"] = {k: v // 1024 for k, v in
                                     sorted(by.items(), key=lambda kv: -kv[1])}
        with open(_OUT + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        os.replace(_OUT + ".tmp", _OUT)

    threading.Thread(target=_dump, name="profile-dump", daemon=True).start()
