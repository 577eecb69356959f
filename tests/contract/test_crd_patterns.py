"""The CRD's patterns must refuse exactly what the model's refuse.

The API server evaluates a CRD `pattern` with Go's RE2; pydantic evaluates the model's with
Rust's regex crate. The two read the same text differently where Unicode is concerned (RE2's
\\s, \\w, \\d and \\b are ASCII; Rust's are Unicode), which once let a command prefix of U+00A0
through `kubectl apply` that the operator then refused. The CRD carries the model's pattern
strings (wabot/crd.py generates it); these tests check that equal strings mean equal sets: no
engine-dependent construct in any pattern, the prefix rule over every code point, and (where a
Go toolchain is installed) RE2 itself against pydantic on every pattern.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import Field, TypeAdapter, ValidationError

from wabot.bot_commands import PREFIX_PATTERN, CommandsSpec
from wabot.spec import WhatsAppBotSpec

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "whatsappbot.yaml"

# Unicode's White_Space property (PropList.txt): what Rust's \s means, and so what the model's
# `^\S+$` refused before the prefix pattern spelled it out.
WHITE_SPACE = frozenset([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                         0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
SCALARS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def crd_patterns() -> dict[str, str]:
    """Every `pattern` in the CRD's schema, by the path of its node."""
    doc = yaml.safe_load(CRD_PATH.read_text())
    (version,) = doc["spec"]["versions"]
    found: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found[path] = node["pattern"]
            for key, sub in node.items():
                walk(sub, f"{path}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(version["schema"]["openAPIV3Schema"], "")
    return found


def engine_dependent(pattern: str) -> list[str]:
    """Constructs whose meaning differs between RE2 and Rust regex: Perl classes and word
    boundaries (ASCII in RE2, Unicode in Rust), Unicode classes (table versions), `.` (which
    both engines define, but whose newline handling is a flag away from differing) and inline
    flags. Explicit classes, literals, \\x{...} escapes, anchors and repetition are read alike."""
    found = []
    i = 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1:i + 2]
            if nxt in tuple("sSwWdDbBpPAzQE"):
                found.append("\\" + nxt)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        elif ch == "." and not in_class:
            found.append(".")
        elif pattern.startswith("(?", i):
            found.append("(?")
        i += 1
    return found


def test_no_crd_pattern_depends_on_the_regex_engine() -> None:
    patterns = crd_patterns()
    assert len(patterns) >= 10 and any("prefix" in p for p in patterns)
    bad = {path: engine_dependent(p) for path, p in patterns.items() if engine_dependent(p)}
    assert bad == {}


def test_the_engine_check_notices_unicode_shorthands() -> None:
    assert engine_dependent(r"^\S+$") == ["\\S"]
    assert engine_dependent(r"^[\w-]+$") == ["\\w"]
    assert engine_dependent(r"^a.b$") == ["."]
    assert engine_dependent(r"^[a.b]\.c$") == []
    assert engine_dependent(PREFIX_PATTERN) == []


def test_the_crd_prefix_pattern_is_the_models() -> None:
    prefix = [p for path, p in crd_patterns().items() if path.endswith(".prefix")]
    assert prefix == [PREFIX_PATTERN]


@pytest.mark.parametrize("prefix", ["\u00a0", "!\u2003", "\u3000", "\v", "\x85", "#\u2028",
                                    "\u202f!", "\u1680", "! ", "\t"])
def test_the_model_refuses_prefixes_with_any_unicode_space(prefix: str) -> None:
    with pytest.raises(ValidationError) as err:
        WhatsAppBotSpec.model_validate({"serverName": "acme", "commands": {"prefix": prefix}})
    assert err.value.errors()[0]["loc"] == ("commands", "prefix")


@pytest.mark.parametrize("prefix", ["!", "#!", "/", "\u00e9", "\u00bf", "\u200b", "\x1c",
                                    "\U0001f916", "\u3001"])
def test_the_model_accepts_prefixes_without_whitespace(prefix: str) -> None:
    """U+200B (zero width space) and U+001C (a separator str.isspace() counts) are not
    White_Space: neither engine calls them whitespace, so both accept them."""
    spec = WhatsAppBotSpec.model_validate({"serverName": "acme", "commands": {"prefix": prefix}})
    assert spec.commands.prefix == prefix


def test_the_model_refuses_exactly_the_white_space_code_points() -> None:
    refused = set()
    for cp in SCALARS:
        try:
            CommandsSpec.model_validate({"prefix": chr(cp)})
        except ValidationError:
            refused.add(cp)
    assert refused == WHITE_SPACE


# --- RE2 itself ---------------------------------------------------------------------------

RE2_CHECK = """
package main

// Reads JSON strings, one a line, on stdin; writes for each a line of 0/1, one per pattern
// given as an argument: whether Go's regexp (RE2, what the API server runs) matches it.
import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

func main() {
	var res []*regexp.Regexp
	for _, p := range os.Args[1:] {
		res = append(res, regexp.MustCompile(p))
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		var s string
		if err := json.Unmarshal(in.Bytes(), &s); err != nil {
			panic(err)
		}
		for _, re := range res {
			if re.MatchString(s) {
				out.WriteByte('1')
			} else {
				out.WriteByte('0')
			}
		}
		fmt.Fprintln(out)
	}
}
"""

CORPUS = ["", "a", "ab", "a-b", "-a", "a-", "a.b", "a\n", "\na", "A", "acme", "x" * 70, "!",
          "#!", "! ", " !", "!\n", "\u00a0", "a\u00a0", "1", "15", "4915112345678", "+4915112",
          "0123456", "50m", "1.5Gi", "1.", "Mi", "100Mi\n", "https://x", "http://", "ftp://x",
          "HTTPS://x", "SOME_VAR", "9VAR", "_", "c0", "hours", "echo.plugin", "x" * 129,
          "example.com/Ready", "Ready", "a/b", "Invalid_Proxy", "x,y:z", "\u00e9", "\u0131",
          "\u212a", "\u0660", "\uff10", "\U0001f600"]


def _go() -> str | None:
    return shutil.which("go") or next(
        (str(p) for p in [Path("/usr/local/go/bin/go")] if p.exists()), None)


@pytest.fixture(scope="module")
def re2_checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = _go()
    if go is None:
        pytest.skip("no Go toolchain to build the RE2 checker")
    src = tmp_path_factory.mktemp("re2check")
    (src / "main.go").write_text(RE2_CHECK)
    (src / "go.mod").write_text("module re2check\n\ngo 1.21\n")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod",
           "CGO_ENABLED": "0"}
    env.setdefault("GOCACHE", str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                  / "go-build"))
    out = subprocess.run([go, "build", "-o", str(src / "re2check"), "."], cwd=src, env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.skip(f"cannot build the RE2 checker: {out.stderr[-300:]}")
    return src / "re2check"


def _re2(checker: Path, patterns: list[str], strings: list[str]) -> list[str]:
    out = subprocess.run([str(checker), *patterns], capture_output=True, text=True, check=True,
                         input="".join(json.dumps(s) + "\n" for s in strings), timeout=300)
    lines = out.stdout.splitlines()
    assert len(lines) == len(strings)
    return lines


def test_re2_and_pydantic_agree_on_every_crd_pattern(re2_checker: Path) -> None:
    patterns = sorted(set(crd_patterns().values()))
    # Every code point alone, and the corpus; all of Unicode for the one pattern that is
    # about Unicode, the BMP's first blocks for the ASCII-class ones.
    strings = CORPUS + [chr(cp) for cp in range(0x3100)] + [f"ab{chr(cp)}" for cp in range(0x3100)]
    verdicts = _re2(re2_checker, patterns, strings)
    differ = []
    for j, pattern in enumerate(patterns):
        model = TypeAdapter(Annotated[str, Field(pattern=pattern)])
        for s, line in zip(strings, verdicts, strict=True):
            try:
                model.validate_python(s)
                ok = True
            except ValidationError:
                ok = False
            if ok != (line[j] == "1"):
                differ.append((pattern, s, "pydantic" if ok else "RE2"))
    assert differ == [], differ[:20]


def test_re2_refuses_exactly_the_white_space_prefixes(re2_checker: Path) -> None:
    verdicts = _re2(re2_checker, [PREFIX_PATTERN, r"^\S+$"], [chr(cp) for cp in SCALARS])
    refused = {cp for cp, line in zip(SCALARS, verdicts, strict=True) if line[0] == "0"}
    assert refused == WHITE_SPACE
    # and the old pattern, for the record: RE2's \S let all but five through
    old = {cp for cp, line in zip(SCALARS, verdicts, strict=True) if line[1] == "0"}
    assert old == {0x09, 0x0A, 0x0C, 0x0D, 0x20}

