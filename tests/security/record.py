"""Each finding of issue 21 as one row of the figures (tests/reliability/plugin.py prints them
at the end of the session and writes FIGURES.md at full size): what the attack did, measured
by the test that reproduces it."""

from __future__ import annotations

import re

from tests.reliability import figures

SECTION = "attacks"
TITLE = "6. Issue 21: attacks by a restricted tenant user and unauthenticated clients"


def finding(number: str, attack: str, outcome: str) -> None:
    """Record `outcome` for finding `number` (e.g. "4", "2b"); rows stay in finding order."""
    section = figures.section(SECTION, TITLE)
    figures.record(SECTION, f"{number}. {attack}", outcome)
    section.rows.sort(key=lambda row: _order(row[0]))


def _order(metric: str) -> tuple[int, str]:
    match = re.match(r"(\d+)(\w*)\.", metric)
    return (int(match.group(1)), match.group(2)) if match else (10**6, metric)
