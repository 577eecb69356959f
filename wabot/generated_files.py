"""Files the repository commits although a command writes them (`python -m wabot.crd write`:
the CRD and its chart copy, the worker's views of the models): one way to tell whether a
committed copy still equals what its generator writes, and to write it when it does not.

The copies are committed so that a reader, Helm and a worker without pydantic find them as
files; `--check` and the contract tests keep them from drifting from their source.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path


def differences(wanted: Mapping[str | Path, str], repo: Path) -> list[str]:
    """A unified diff per committed file (path below `repo` -> its generated text) that is not
    the generated one; a missing file is all additions."""
    out = []
    for target, want in wanted.items():
        path = repo / target
        have = path.read_text() if path.exists() else ""
        if have != want:
            out.append("".join(difflib.unified_diff(
                have.splitlines(keepends=True), want.splitlines(keepends=True),
                f"{target} (committed)", f"{target} (generated)")))
    return out


def write(wanted: Mapping[str | Path, str], repo: Path) -> list[Path]:
    """Write each file that differs from its generated text; the ones written."""
    written = []
    for target, want in wanted.items():
        path = repo / target
        if not path.exists() or path.read_text() != want:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(want)
            written.append(Path(target))
    return written
