"""Sizes a newcomer can read: no product file over 400 lines, no function over 60 (issue 23).

A file that grows past the limit is the sign that it holds two things; a function that long,
that it does several. Product code is what ships: the packages below (tests, bench, data such
as gateway/openapi.yaml are not read); a generated file (its first line says GENERATED, e.g.
wabot/spec_view.py) is not read either: its generator is, and a person never edits it. A
line is a line of the file as `wc -l` counts it; a function runs from its `def` to its last
line, docstring and nested functions included. An exception is listed in ALLOWED with the
most it may have and why; it may not grow, and an entry the code no longer needs fails too,
so the list only ever shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("wabot", "wabot_cli", "botworker", "fleet", "gateway", "operator/wabot_operator",
           "devcluster")
SOURCE = (".py", ".js", ".mjs", ".css", ".html", ".sh")
FILE_LINES = 400
FUNCTION_LINES = 60

# "path" or "path::function" -> (the most lines it may have, why it is over the limit)
ALLOWED: dict[str, tuple[int, str]] = {}


def _source_files() -> list[Path]:
    return sorted(path for root in PRODUCT for path in (REPO / root).rglob("*")
                  if path.suffix in SOURCE and path.is_file()
                  and "__pycache__" not in path.parts)


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method, nested ones too."""
    found: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + node.name
            found.append((name, (node.end_lineno or node.lineno) - node.lineno + 1))
            found += _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            found += _functions(node, prefix + node.name + ".")
        else:
            found += _functions(node, prefix)
    return found


def sizes() -> dict[str, tuple[int, int]]:
    """"path" or "path::function" -> (its lines, its limit), for every product file and
    every function in a product Python file."""
    out: dict[str, tuple[int, int]] = {}
    for path in _source_files():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text()
        if "GENERATED" in text.partition("\n")[0]:
            continue
        out[rel] = (len(text.splitlines()), FILE_LINES)
        if path.suffix == ".py":
            for name, lines in _functions(ast.parse(text, rel)):
                key = f"{rel}::{name}"
                out[key] = (max(lines, out.get(key, (0, 0))[0]), FUNCTION_LINES)
    return out


def test_no_product_file_or_function_over_its_limit() -> None:
    found = sizes()
    over = sorted(f"{key}: {lines} lines (limit {ALLOWED.get(key, (limit,))[0]})"
                  for key, (lines, limit) in found.items()
                  if lines > max(limit, ALLOWED.get(key, (0, ""))[0]))
    assert not over, ("split these (a file: by what it holds; a function: by the steps it "
                      "takes), or list one in ALLOWED with its reason:\n" + "\n".join(over))


def test_every_allowed_exception_is_still_needed() -> None:
    found = sizes()
    stale = sorted(f"{key}: now {found[key][0] if key in found else 'gone'}"
                   for key in ALLOWED if key not in found or found[key][0] <= found[key][1])
    assert not stale, "within the limit now: remove from ALLOWED:\n" + "\n".join(stale)


def test_the_counter_sees_methods_and_nested_functions() -> None:
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            pass\n"
                     "        return g\n")
    assert _functions(tree) == [("A.f", 4), ("A.f.g", 2)]
