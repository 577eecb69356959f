"""The suite's figures: each test records what it measured; the session prints one table at
the end (tests/reliability/plugin.py) and, at full size, writes FIGURES.md."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Section:
    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: str = "running"


_lock = threading.Lock()
SECTIONS: dict[str, Section] = {}


def section(key: str, title: str) -> Section:
    with _lock:
        if key not in SECTIONS:
            SECTIONS[key] = Section(title)
        return SECTIONS[key]


def record(key: str, metric: str, value: object) -> None:
    """One figure; printed at once too (pytest shows it with the test's captured output)."""
    sec = SECTIONS[key]
    text = value if isinstance(value, str) else _fmt(value)
    with _lock:
        sec.rows = [r for r in sec.rows if r[0] != metric] + [(metric, text)]
    print(f"[figure] {sec.title}: {metric} = {text}")


def note(key: str, text: str) -> None:
    with _lock:
        SECTIONS[key].notes.append(text)
    print(f"[note] {SECTIONS[key].title}: {text}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def render_markdown() -> str:
    out: list[str] = []
    for sec in SECTIONS.values():
        out.append(f"### {sec.title} — {sec.outcome}")
        out.append("")
        out.append("| figure | value |")
        out.append("|---|---|")
        for metric, value in sec.rows:
            out.append(f"| {metric} | {value.replace('|', '/')} |")
        out.append("")
        for n in sec.notes:
            out.append(f"- {n}")
        if sec.notes:
            out.append("")
    return "\n".join(out)


def render_text() -> list[str]:
    lines: list[str] = []
    for sec in SECTIONS.values():
        lines.append(f"{sec.title} [{sec.outcome}]")
        width = max((len(m) for m, _ in sec.rows), default=0)
        for metric, value in sec.rows:
            lines.append(f"  {metric.ljust(width)}  {value}")
        for n in sec.notes:
            lines.append(f"  * {n}")
    return lines
