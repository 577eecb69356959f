"""Density, the printed part: each worker's memory idle, after each stage of commands and over
the mixed run, with the cgroup's charge beside VmRSS, against the targets of issue 28 and the
Baileys socket measured in the same run."""

from __future__ import annotations

from typing import Any

from bench.common import Result, at_most, ratio
from bench.density_setup import (
    TARGET_IDLE_MB,
    TARGET_IDLE_RATIO,
    TARGET_SLOPE_MB,
    TARGET_WORKED_MB,
)

LABELS = {"sqlite": "file spec, SQLite", "postgres": "file spec, PostgreSQL",
          "kubernetes": "kubernetes spec source, SQLite (production)",
          "postgres_webhook": "file spec, PostgreSQL, message+command webhook"}


def _cgroup_note(r: dict[str, Any]) -> str:
    if "cgroup_usage_mb" not in r:
        return "no cgroup of its own"
    return (f"cgroup {r['cgroup_usage_mb']:.1f} MiB (anon {r.get('cgroup_rss_mb', 0):.1f} + "
            f"page cache {r.get('cgroup_cache_mb', 0):.1f}; working set "
            f"{r.get('cgroup_working_set_mb', 0):.1f}; peak since start "
            f"{r.get('cgroup_max_usage_mb', 0):.1f})")


def _ratio_text(rss: float | None, b: float) -> str:
    r = ratio(rss, b)
    return "n/a" if r is None else f"{r:.2f}"


def _stage_label(texts: list[str]) -> str:
    if len(texts) == 1 and texts[0].startswith("media:"):
        return f"a received {texts[0].removeprefix('media:')} (1 MiB, stored)"
    if texts == ["!ping"]:
        return "its first command (!ping: an audit row)"
    if any(t.startswith("!note") for t in texts):
        return "the database commands too (!note set, get): every kind"
    return f"the other kinds ({', '.join(texts)})"


def report_workers(res: Result, workers: dict[str, dict[str, Any]],
                   baileys: dict[str, Any], hold_s: float) -> None:
    b = baileys["rss_mb"]
    res.note(f"VmRSS from /proc/<pid>/status, sampled every 0.5 s; the value {hold_s:.0f} s "
             "after start (or after a stage of commands) is the one compared. Idle: after the "
             "worker's first dial to WhatsApp failed (unreachable here), retrying with backoff. "
             "Worker: `python -m wabot worker` with the runtime settings of the worker "
             "environment (wabot/workerenv.py RUNTIME_TUNING), in a memory cgroup of its own "
             "(the cgroup's charge is printed beside RSS: what Kubernetes compares with the "
             "limit). Commands are real MessageEv bytes through the worker's own dispatcher "
             "(bench/_command_hooks; replies dropped, WhatsApp is unreachable). Baileys: `node "
             "bench/baileys/idle-socket.mjs`, same hold.")
    res.add("Baileys (Node, 1 socket) RSS", b, "MiB",
            note=f"baileys {baileys['baileys']}; {baileys['rss_min_mb']:.1f}-"
            f"{baileys['rss_max_mb']:.1f} MiB over the second half of the hold")
    for variant, w in workers.items():
        _idle(res, LABELS.get(variant, variant), w, b)
        for worked in w.get("after_commands", []):
            rss = worked["rss_mb"]
            final = any(t.startswith("!note") for t in worked["texts"])
            res.add(f"  same worker after {_stage_label(worked['texts'])}", rss, "MiB",
                    target=f"<= {TARGET_WORKED_MB:.0f} MiB" if final else None,
                    met=at_most(rss, TARGET_WORKED_MB) if final else None,
                    note=f"{_cgroup_note(worked)}; ratio to Baileys {_ratio_text(rss, b)}")
        if "mixed" in w:
            _mixed(res, w["mixed"], b)
        if "webhook" in w:
            hook = w["webhook"]
            res.note(f"{LABELS.get(variant, variant)}: its receiver got {hook['deliveries']:,} "
                     f"deliveries ({', '.join(hook['events'])}), {hook['signed']:,} signed")


def _idle(res: Result, label: str, w: dict[str, Any], b: float) -> None:
    rss = w.get("rss_mb")
    r = ratio(rss, b)
    res.add(f"worker RSS idle ({label})", rss, "MiB",
            target=f"<= {TARGET_IDLE_MB:.0f} MiB and <= {TARGET_IDLE_RATIO}x Baileys",
            met=None if rss is None or r is None else (rss <= TARGET_IDLE_MB
                                                       and r <= TARGET_IDLE_RATIO),
            note=f"{w.get('rss_min_mb', 0):.1f}-{w.get('rss_max_mb', 0):.1f} MiB over the "
            f"second half; anon {w.get('rss_anon_mb', 0):.1f}, file "
            f"{w.get('rss_file_mb', 0):.1f} MiB; {_cgroup_note(w)}; {w.get('threads')} "
            f"threads, {w.get('dial_attempts')} dials")
    res.add(f"ratio idle worker/Baileys ({label})", r, "x", target=f"<= {TARGET_IDLE_RATIO}",
            met=None if r is None else r <= TARGET_IDLE_RATIO)


def _mixed(res: Result, m: dict[str, Any], b: float) -> None:
    rss = m["rss_mb"]
    res.add(f"  same worker after {m['commands']:,} more mixed commands", rss, "MiB",
            target=f"<= {TARGET_WORKED_MB:.0f} MiB", met=at_most(rss, TARGET_WORKED_MB),
            note=f"{m['messages']:,} messages in {m['seconds']:.0f} s; {_cgroup_note(m)}; "
            f"ratio to Baileys {_ratio_text(rss, b)}")
    points = m["points"]
    late = [p for p in points if p["commands"] >= m["commands"] / 2] or points[-1:]
    slope = m.get("slope_late_rss_mb_per_1000")
    res.add("  RSS growth over the second half of the mixed run", slope, "MiB/1,000 cmds",
            target=f"<= {TARGET_SLOPE_MB}", met=None if slope is None else slope <= TARGET_SLOPE_MB,
            note=f"least squares over {len(late)} readings: {late[0]['VmRSS']:.1f} MiB at "
            f"{late[0]['commands']:,} commands, {late[-1]['VmRSS']:.1f} at "
            f"{late[-1]['commands']:,}; over the whole run "
            f"{m.get('slope_rss_mb_per_1000') or 0:.2f} MiB/1,000 ({points[0]['VmRSS']:.1f} -> "
            f"{points[-1]['VmRSS']:.1f} MiB: bounded caches filling)")
    cg = m.get("slope_late_cgroup_mb_per_1000")
    if cg is not None:
        res.add("  cgroup growth over the second half", cg, "MiB/1,000 cmds",
                note=f"{points[0].get('cgroup_usage', 0):.1f} -> "
                f"{points[-1].get('cgroup_usage', 0):.1f} MiB over the whole run (includes the "
                "page cache of the growing database file)")


def report_container(res: Result, c: dict[str, Any], b: float) -> None:
    res.add("worker container: process RSS idle", c["process_rss_mb"], "MiB",
            target=f"<= {TARGET_IDLE_MB:.0f} MiB", met=at_most(c["process_rss_mb"],
                                                              TARGET_IDLE_MB),
            note=f"{c['image']}, hardened flags of tests/packaging/test_images.py")
    if "cgroup_usage_mb" in c:
        res.add("worker container: cgroup memory", c["cgroup_usage_mb"], "MiB",
                note=f"{_cgroup_note(c)}; podman stats {c.get('podman_stats_mem_usage')}")
    r = ratio(c["process_rss_mb"], b)
    res.add("ratio container process/Baileys", r, "x", target=f"<= {TARGET_IDLE_RATIO}",
            met=None if r is None else r <= TARGET_IDLE_RATIO)
    worked = c.get("on_postgres", {}).get("worked")
    if worked:
        _container_worked(res, worked, b)


def _container_worked(res: Result, worked: dict[str, Any], b: float) -> None:
    final = worked["stages"][-1]
    res.add("worker container on PostgreSQL after every kind of command", final["rss_mb"], "MiB",
            target=f"<= {TARGET_WORKED_MB:.0f} MiB", met=at_most(final["rss_mb"],
                                                                TARGET_WORKED_MB),
            note=f"{_cgroup_note(final)}; ratio to Baileys {_ratio_text(final['rss_mb'], b)}")
    m = worked.get("mixed")
    if m:
        readings = ", ".join(f"{p['VmRSS']:.1f}" for p in m["points"])
        res.add(f"worker container on PostgreSQL after {m['commands']:,} more mixed commands",
                m["rss_mb"], "MiB", target=f"<= {TARGET_WORKED_MB:.0f} MiB",
                met=at_most(m["rss_mb"], TARGET_WORKED_MB),
                note=f"{_cgroup_note(m)}; readings every 1,000: {readings} MiB")

