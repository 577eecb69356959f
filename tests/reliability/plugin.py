"""The figures' session plumbing, for every module of the test tree that has a SECTION: the
outcome of its tests beside its figures, one table printed at the end of the session (also in
CI output), and FIGURES.md written at full size (`WABOT_CHAOS_FULL=1`). Loaded by
tests/conftest.py."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import figures, sizes

HERE = Path(__file__).resolve().parent
FIGURES_MD = HERE / "FIGURES.md"

_started = time.time()
_results: dict[str, list[tuple[str, str]]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    key = getattr(getattr(item, "module", None), "SECTION", None)
    if key is not None and (rep.when == "call" or rep.outcome != "passed"):  # type: ignore[attr-defined]
        outcome = rep.outcome  # type: ignore[attr-defined]
        if hasattr(rep, "wasxfail"):
            outcome = "xfailed" if outcome == "skipped" else "XPASS"
        _results.setdefault(key, []).append((item.name, outcome))
    return rep


def _outcome(key: str) -> str:
    results = _results.get(key, [])
    if not results:
        return "not run"
    bad = [f"{name} {out}" for name, out in results if out not in ("passed", "xfailed")]
    if bad:
        return "FAILED/SKIPPED: " + "; ".join(bad)
    xfailed = sum(1 for _, out in results if out == "xfailed")
    passed = sum(1 for _, out in results if out == "passed")
    return f"{passed} passed" + (f", {xfailed} xfailed (known gap)" if xfailed else "")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not figures.SECTIONS:
        return
    for key, sec in figures.SECTIONS.items():
        sec.outcome = _outcome(key)
    tr = terminalreporter
    tr.write_sep("=", f"wabot reliability figures ({sizes.SIZE_NAME} size, seed {sizes.SEED})")
    figures.SECTIONS = dict(sorted(figures.SECTIONS.items(), key=lambda kv: kv[1].title))
    for line in figures.render_text():
        tr.write_line(line)
    if sizes.FULL and not os.environ.get("WABOT_FIGURES_NO_WRITE"):
        FIGURES_MD.write_text(_document())
        tr.write_line(f"figures written to {FIGURES_MD.relative_to(HERE.parents[1])}")


def _document() -> str:
    elapsed = time.time() - _started
    head = [
        "# Reliability and security figures (issues 8 and 21)",
        "",
        "Written by `WABOT_CHAOS_FULL=1 scripts/test.sh tests/reliability tests/security` at "
        "the end of the run; the CI size (`scripts/test.sh tests`) prints the same tables "
        "without writing this file.",
        "",
        f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(_started))}, "
        f"{elapsed / 60:.1f} min, size `{sizes.SIZE_NAME}`, seed `{sizes.SEED}` "
        f"(`WABOT_CHAOS_SEED={sizes.SEED}` repeats the random choices)",
        f"- machine: {os.cpu_count()} cores, Python {platform.python_version()}",
        "- kwok runs no containers: in the chaos run a kubelet stand-in runs the worker's real "
        "Lease elector for every Running pod on kwok's nodes (tests/reliability/kubeworld.py); "
        f"{sizes.CHAOS_REAL_BOTS} of its bots run the real worker image on the real node "
        "(devcluster/node.py, tests/reliability/realnode_share.py)",
        "",
        "",
    ]
    return "\n".join(head) + figures.render_markdown() + "\n"
