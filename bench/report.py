"""results.json and RESULTS.md from the benchmarks' results."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.common import Metric, Result


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("cmd/s", "req", "req/s", "dials/s", "pods/s") and abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met(m: Metric) -> str:
    if m.target is None:
        return ""
    if m.met is None:
        return f"{m.target}: n/a"
    return f"{m.target}: {'met' if m.met else '**missed**'}"


def to_json(results: list[Result], meta: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [dataclasses.asdict(r)
                                                          for r in results]},
                               indent=1, default=str) + "\n")


def to_markdown(results: list[Result], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        "# wabot benchmarks",
        "",
        f"Command: `{meta['command']}` ({meta['mode']}), {meta['started']}, "
        f"{meta['total_s']:.0f} s. Code: `{meta['git']}`.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_gib']} GiB RAM, "
        f"Python {m['python']}, Node {m.get('node') or '-'}, Linux {m['kernel']}. "
        f"Load average at start {m['loadavg_at_start']}.",
        "",
        "```",
        "$ free -g",
        m["free_g"],
        "```",
        "",
        "The machine is shared with other work; each section gives how many cores the whole "
        "machine was busy while it ran (ours included). Memory in MiB (VmRSS kB / 1024). "
        "How each number is measured, the profiling behind the missed targets and what-if "
        "runs: [bench/README.md](README.md).",
        "",
    ]
    for r in results:
        lines.append(f"## {r.title}")
        lines.append("")
        if r.error:
            lines.append(f"**Failed:** `{r.error}`")
            lines.append("")
        load = r.extra.get("machine")
        if load:
            lines.append(f"{r.seconds:.0f} s; machine busy {load['machine_busy_cores']} cores on "
                         f"average, load average {load['loadavg_1m_start']} -> "
                         f"{load['loadavg_1m_end']}.")
            lines.append("")
        if r.metrics:
            lines.append("| metric | value | unit | target | note |")
            lines.append("|---|---:|---|---|---|")
            for x in r.metrics:
                note = x.note.replace("|", "/").replace("\n", " ")
                lines.append(f"| {x.name} | {_fmt(x.value, x.unit)} | {x.unit} | {_met(x)} | "
                             f"{note} |")
            lines.append("")
        for n in r.notes:
            lines.append(f"- {n}")
        if r.notes:
            lines.append("")
    return "\n".join(lines) + "\n"


def print_summary(results: list[Result]) -> None:
    for r in results:
        print(f"\n== {r.title} ({r.seconds:.0f} s)")
        if r.error:
            print(f"   FAILED: {r.error}")
        for x in r.metrics:
            target = f"   [{_met(x)}]" if x.target else ""
            print(f"   {x.name:<72} {_fmt(x.value, x.unit):>10} {x.unit}{target}")
