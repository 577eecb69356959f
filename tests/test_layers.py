"""The import layers of the product, checked on every run so a new arrow fails here.

    wabot_cli                          the `wabot` command: may import every package
    botworker  fleet  gateway  wabot_operator     the tiers: each imports `wabot`, not each other
    wabot                              the shared contract: imports no package of ours
    devcluster                         the local control plane: imports nothing of the product

An arrow is a static `import`/`from ... import` anywhere in a file (in a function too: a lazy
import is still a dependency) or an `importlib.import_module("literal")`; an import by a
name computed at run time would hide an arrow, so each one is listed in COMPUTED_IMPORTS with
what it loads. Starting another program as a process (`python -m wabot_cli worker`, what the
fleet does; `python -m wabot`, which replaces itself with `python -m wabot_cli`) is not an
arrow. Tests and bench may import anything and are not read. The arrows that cross the layers
today are listed in EXCEPTIONS, each with its reason; one that disappears must leave the list
too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# package -> its folder
PACKAGES = {
    "wabot": "wabot",
    "wabot_cli": "wabot_cli",
    "botworker": "botworker",
    "fleet": "fleet",
    "gateway": "gateway",
    "wabot_operator": "operator/wabot_operator",
    "devcluster": "devcluster",
}
TIERS = ("botworker", "fleet", "gateway", "wabot_operator")

# package -> the packages of ours it may import
ALLOWED: dict[str, frozenset[str]] = {
    "wabot": frozenset(),
    "devcluster": frozenset(),
    **{tier: frozenset({"wabot"}) for tier in TIERS},
    "wabot_cli": frozenset(PACKAGES) - {"wabot_cli"},
}

# (file, imported module) -> why this arrow crosses the layers
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("fleet/schema.py", "botworker.data.migrate"):
        "the process tiers bring the workers' PostgreSQL schema to head (the worker's data "
        "layer owns the migrations), in a child process",
    ("fleet/compose.py", "botworker.data.migrate"):
        "the compose file's db-setup service runs the worker's migrations and names each "
        "tenant's password variable as the data layer does",
    ("fleet/compose.py", "botworker.data.tenancy"):
        "a tenant's DSN in the compose file names its database role as the data layer does",
}


def _is_dynamic_import(node: ast.AST) -> bool:
    """A call of importlib.import_module or __import__ (whatever its argument)."""
    return isinstance(node, ast.Call) and getattr(
        node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif (_is_dynamic_import(node) and isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append(node.args[0].value)
    return found


def _product_files() -> list[Path]:
    return [path for folder in PACKAGES.values() for path in sorted((REPO / folder).rglob("*.py"))]


def arrows() -> dict[tuple[str, str], str]:
    """(file, imported module) -> the importing package, for every import of another of ours."""
    found: dict[tuple[str, str], str] = {}
    for package, folder in PACKAGES.items():
        files = sorted((REPO / folder).rglob("*.py"))
        assert files, f"{folder}/ holds no Python file: is PACKAGES still the tree?"
        for path in files:
            for module in _imports(ast.parse(path.read_text(), str(path))):
                top = module.partition(".")[0]
                if top in PACKAGES and top != package:
                    found[(path.relative_to(REPO).as_posix(), module)] = package
    return found


def test_every_arrow_follows_the_layers_or_is_a_listed_exception() -> None:
    wrong = sorted(f"{file} imports {module}"
                   for (file, module), package in arrows().items()
                   if module.partition(".")[0] not in ALLOWED[package]
                   and (file, module) not in EXCEPTIONS)
    assert not wrong, ("imports across the layers (see this file's docstring; move the code "
                       "down to `wabot`, or list the arrow with its reason):\n" + "\n".join(wrong))


# file -> why it imports by a computed name (what it may load: never one of our packages)
COMPUTED_IMPORTS: dict[str, str] = {
    "botworker/lazydeps.py":
        "loads neonize's deferred third-party dependencies (its DEFERRED set) on first use",
}


def _computed_imports() -> set[str]:
    return {
        path.relative_to(REPO).as_posix()
        for path in _product_files()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _is_dynamic_import(node) and isinstance(node, ast.Call)
        and not (node.args and isinstance(node.args[0], ast.Constant))}


def test_no_import_by_a_computed_name_but_the_listed_ones() -> None:
    """An import whose module name is computed at run time is an arrow this test cannot see
    (`python -m wabot` once reached the CLI so): each one is listed with what it loads."""
    found = _computed_imports()
    hidden = sorted(found - set(COMPUTED_IMPORTS))
    assert not hidden, ("imports by a computed name (import the module statically, or list "
                        "the file in COMPUTED_IMPORTS with what it loads):\n" + "\n".join(hidden))
    stale = sorted(set(COMPUTED_IMPORTS) - found)
    assert not stale, "no computed import left: remove from COMPUTED_IMPORTS:\n" + \
        "\n".join(stale)


def test_every_listed_exception_is_still_an_arrow() -> None:
    found = arrows()
    stale = sorted(f"{file} -> {module}" for file, module in EXCEPTIONS
                   if (file, module) not in found)
    assert not stale, "arrows no longer in the code: remove them from EXCEPTIONS:\n" + \
        "\n".join(stale)


def test_importing_the_shared_contract_loads_no_tier() -> None:
    """Beyond what the source says: every module of `wabot` imported in a fresh interpreter
    leaves no tier and no CLI in sys.modules (a worker pays for its own code only)."""
    modules = sorted(f"wabot.{p.stem}" for p in (REPO / "wabot").glob("*.py")
                     if p.stem not in ("__init__", "__main__"))
    above = {*TIERS, "wabot_cli"}
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{n.partition('.')[0] for n in sys.modules}} & {above!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


# Where a circle of imports is looked for: the product's packages, and the benchmarks.
CYCLE_ROOTS = (*PACKAGES.values(), "bench")


def _module_of(path: Path) -> str:
    """The dotted name a file is imported by (operator/wabot_operator/x.py: wabot_operator.x)."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "operator":
        parts.pop(0)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_arrows(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ours that `path` (module `name`) imports anywhere in it, relative and
    lazy imports and those under TYPE_CHECKING too: `from pkg import mod` names the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                         for alias in node.names)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports, over CYCLE_ROOTS."""
    files = {_module_of(path): path for root in CYCLE_ROOTS
             for path in sorted((REPO / root).rglob("*.py"))}
    return {name: _module_arrows(path, name, set(files)) for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_circle_of_imports() -> None:
    """Two modules that import each other (directly or round a longer loop, lazily or only
    for type checking) cannot be read, tested or moved one without the other: the shared part
    belongs in a third module both import."""
    found = circles(import_graph())
    assert not found, "modules that import each other:\n" + "\n".join(
        " <-> ".join(group) for group in found)


def test_the_circle_finder_sees_a_lazy_circle() -> None:
    """The rule is only as good as its finder: a loop closed by a lazy import is a circle."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert "botworker.data.session" in import_graph()["botworker.data.db"]
