"""The worker's folders are its layers (botworker/README.md, "Layout"): the pure core imports
no I/O and nothing above it, adapters never reach into the running bot, and nothing points back
up at the composition root. Lazy imports inside functions count too: they are still arrows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "botworker"

# For each layer: the botworker packages/modules its files may not import.
FORBIDDEN = {
    "core": ("botworker.adapters", "botworker.runtime", "botworker.data", "botworker.worker",
             "botworker.main", "botworker.config", "botworker.metrics", "botworker.logs"),
    "data": ("botworker.adapters", "botworker.runtime", "botworker.worker", "botworker.main"),
    "adapters": ("botworker.runtime", "botworker.worker", "botworker.main"),
    "runtime": ("botworker.worker", "botworker.main"),
}
# The core decides; it never talks to the network, a database or WhatsApp itself.
CORE_NO_IO = ("neonize", "socket", "ssl", "http", "urllib.request", "sqlite3", "subprocess",
              "psycopg", "sqlalchemy", "sqlmodel", "prometheus_client", "kubernetes")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, as absolute dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from . import lifecycle` imports a module, not a name.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _layer_files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def _hits(imported: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported for p in prefixes if m == p or m.startswith(p + "."))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    files = _layer_files(layer)
    assert files, f"botworker/{layer}/ is missing"
    wrong = {
        str(f.relative_to(PACKAGE.parent)): hits
        for f in files
        if (hits := _hits(_imports(f), FORBIDDEN[layer]))
    }
    assert wrong == {}


def test_the_core_does_no_io() -> None:
    wrong = {
        str(f.relative_to(PACKAGE.parent)): hits
        for f in _layer_files("core")
        if (hits := _hits(_imports(f), CORE_NO_IO))
    }
    assert wrong == {}


def test_the_checker_sees_relative_and_lazy_imports() -> None:
    """The rule is only as good as its parser: a lazy relative import must be found."""
    imported = _imports(PACKAGE / "worker.py")
    assert "botworker.adapters.lease_elector" in imported  # imported inside a method
    assert "botworker.core.lifecycle" in imported  # `from .core import lifecycle as lc`
