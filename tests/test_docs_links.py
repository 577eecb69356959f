"""Every relative link in the user-facing documents leads somewhere.

The README and docs/ are what a newcomer reads first; a link to a file that was moved or
removed (or a heading that was renamed) sends them nowhere, and nothing else would notice.
Links to other sites are not followed: the tests run without the internet.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `[text](target)` or `[text](target "title")`; images (`![alt](target)`) match too.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def documents() -> list[Path]:
    docs = [REPO / "README.md", REPO / "bench" / "README.md"]
    docs += sorted((REPO / "docs").rglob("*.md"))
    return [d for d in docs if d.is_file()]


def _prose(text: str) -> str:
    """The text without code: a `](` inside a code block or a code span is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(doc: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(_prose(doc.read_text(encoding="utf-8")))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out: set[str] = set()
    for match in HEADING.finditer(text):
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken(doc: Path, root: Path = REPO) -> dict[str, str]:
    """Each link of `doc` that leads nowhere, with why; links to other sites are skipped."""
    problems: dict[str, str] = {}
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.is_relative_to(root.resolve()):
            problems[target] = "points outside the repository"
        elif not dest.exists():
            problems[target] = "no such file"
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems[target] = f"no heading with the anchor #{anchor}"
    return problems


@pytest.mark.parametrize("doc", documents(), ids=lambda d: str(d.relative_to(REPO)))
def test_every_relative_link_resolves(doc: Path) -> None:
    assert broken(doc) == {}, f"broken links in {doc.relative_to(REPO)}"


@pytest.mark.parametrize("doc", documents(), ids=lambda d: str(d.relative_to(REPO)))
def test_no_lab_notebook_in_the_guides(doc: Path) -> None:
    """A reader cannot follow a script under /tmp or a session's "Round 7"; the measurement
    history belongs in docs/benchmarks/, told by what was found, not by when."""
    text = doc.read_text(encoding="utf-8")
    assert not re.findall(r"/tmp/[\w.-]+\.(?:py|sh)\b|\bRounds? \d+", text)


def test_the_checker_sees_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    """The check itself must notice both kinds of breakage, or a green run proves nothing."""
    (tmp_path / "there.md").write_text("# A heading (with `code`)\n\n## Again\n\n## Again\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-code) [ok](there.md#again-1)\n"
        "[web](https://example.com/x) [here](#top) `[span](in-a-span.md)`\n"
        "[gone](missing.md) [no heading](there.md#nope) [out](../../x.md)\n"
        "\n# Top\n\n```\n[in code](also-missing.md)\n```\n"
    )
    assert broken(doc, root=tmp_path) == {
        "missing.md": "no such file",
        "there.md#nope": "no heading with the anchor #nope",
        "../../x.md": "points outside the repository",
    }
