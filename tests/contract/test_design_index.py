"""docs/design.md's "Where things happen" is how a newcomer finds their way (issue 23): every
file or folder it names must exist, and it must name the places the issue asks for.

A path is a backquoted word with a slash or a file ending. One that does not stand from the
repository's root is read as the rest of the row writes it: below a folder the row named
before it (or that folder's parents: `core/parser.py` after `botworker/runtime/pipeline.py`),
else as the end of some path in the tree (`templates/admission-policy.yaml`, the chart's).
A `*` stands for any part of a name. URL paths (`/v1/...`), paths inside a container
(`/etc/...`) and annotation names (`wabot.io/...`) are not files and are not read.
"""

from __future__ import annotations

import os
import re
from fnmatch import fnmatchcase as fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO / "docs" / "design.md"
SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", ".mypy_cache", ".ruff_cache",
             ".pytest_cache"}
# The places issue 23's "Done when" asks the index to name, by the words of its rows.
REQUIRED_ROWS = ("a spec becomes each object", "the objects are applied",
                 "a message becomes a reply", "tenant isolation in the database",
                 "tenant isolation in Kubernetes")


def index_rows() -> dict[str, str]:
    """what -> where, for each row of the index table."""
    section = DESIGN.read_text().split("## Where things happen", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("what", "---"):
            rows[cells[0]] = cells[1]
    return rows


def _paths(cell: str) -> list[str]:
    found = []
    for word in re.findall(r"`([^`]+)`", cell):
        if any(c in word for c in " <{") or word.startswith("/"):
            continue
        if "/" in word and "." in word.split("/", 1)[0]:
            continue  # an annotation or label name (wabot.io/...)
        if "/" in word or re.search(r"\.(py|ya?ml|js|mjs|css|html|md|sh|json|toml)$", word):
            found.append(word.rstrip("/"))
    return found


def _tree() -> set[str]:
    """Every file and folder of the checkout, relative to its root."""
    out: set[str] = set()
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        rel = Path(folder).relative_to(REPO)
        out.update((rel / name).as_posix() for name in (*dirs, *files))
    return out


def unresolved(cell: str, tree: set[str]) -> list[str]:
    """The paths of one row's cell that name nothing in the tree."""
    bases: list[str] = []
    missing: list[str] = []
    for word in _paths(cell):
        candidates = [word] + [f"{b}/{word}" for b in bases]
        hit = next((p for c in candidates for p in sorted(tree) if fnmatch(p, c)), None)
        if hit is None:  # the end of some path in the tree
            hit = next((p for p in sorted(tree) if fnmatch(p, "*/" + word)), None)
        if hit is None:
            missing.append(word)
            continue
        parts = hit.split("/")
        bases += ["/".join(parts[:i]) for i in range(len(parts), 0, -1)
                  if "/".join(parts[:i]) not in bases]
    return missing


def test_the_index_names_the_places_a_newcomer_looks_for() -> None:
    rows = index_rows()
    absent = [what for what in REQUIRED_ROWS if what not in rows]
    assert not absent, f"docs/design.md's index has no row for: {absent}"
    for what in REQUIRED_ROWS:
        assert _paths(rows[what]), f"the row {what!r} names no file"


@pytest.mark.parametrize("what", sorted(index_rows()))
def test_every_path_the_index_names_exists(what: str) -> None:
    assert unresolved(index_rows()[what], _TREE) == []


def test_a_path_that_is_gone_is_found_missing() -> None:
    tree = {"botworker", "botworker/runtime", "botworker/runtime/pipeline.py",
            "botworker/core", "botworker/core/parser.py"}
    cell = "`botworker/runtime/pipeline.py`: `core/parser.py`, `core/filters.py`, `/v1/x`"
    assert unresolved(cell, tree) == ["core/filters.py"]


_TREE = _tree()
