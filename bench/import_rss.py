"""Which imports a worker's memory goes to: the resident memory each module's execution adds,
by top-level package and for the largest single modules (bench/PROFILE-density.md, the first
finding). `python -X importtime` says where the time goes, not the memory; this does the same
for RSS.

    python -m bench.import_rss botworker.main botworker.worker neonize.client
    python -m bench.import_rss --lazy botworker.worker    # with neonize's deferred toolbox
                                                          # (botworker/lazydeps.py), as a worker

A finder first on `sys.meta_path` wraps every loader's `exec_module` and reads VmRSS from
/proc/self/statm before and after: a module's own cost is what its execution added minus what
the modules it imported added (its children). Linux only; figures move by ~0.1 MiB between runs
(allocator arenas), so read the packages, not the decimals. Run it in a fresh interpreter: what
is already imported is not counted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

_PAGE_MIB = 4096 / 1048576


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_MIB


@dataclass
class Recorder:
    """(module, MiB including its children, MiB of its own) for every module executed."""

    rows: list[tuple[str, float, float]] = field(default_factory=list)
    _open: list[list[float]] = field(default_factory=list)  # [rss before, children's MiB]

    def measured(self, name: str, loader: importlib.abc.Loader, module: ModuleType) -> None:
        self._open.append([rss_mib(), 0.0])
        try:
            loader.exec_module(module)
        finally:
            before, children = self._open.pop()
            inclusive = rss_mib() - before
            self.rows.append((name, inclusive, inclusive - children))
            if self._open:
                self._open[-1][1] += inclusive


class _MeasuredLoader(importlib.abc.Loader):
    def __init__(self, name: str, loader: importlib.abc.Loader, recorder: Recorder) -> None:
        self._name, self._loader, self._recorder = name, loader, recorder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._recorder.measured(self._name, self._loader, module)

    def __getattr__(self, attr: str) -> object:  # get_resource_reader, is_package, ...
        return getattr(self._loader, attr)


class MeasuringFinder(importlib.abc.MetaPathFinder):
    """Asks the finders after it and wraps the loader of what they find."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _MeasuredLoader(fullname, spec.loader, self._recorder)
            return spec
        return None


def report(recorder: Recorder, total: float, top: int) -> list[str]:
    own: defaultdict[str, float] = defaultdict(float)
    count: Counter[str] = Counter()
    for name, _inclusive, self_mib in recorder.rows:
        package = name.split(".")[0]
        own[package] += self_mib
        count[package] += 1
    lines = [f"total +{total:.1f} MiB, {len(recorder.rows)} modules executed", "by package:"]
    lines += [f"  {pkg:28s} own {mib:6.2f} MiB  {count[pkg]:4d} modules"
              for pkg, mib in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines.append("largest single modules (own, including children):")
    lines += [f"  {name:50s} {self_mib:6.2f}  {inclusive:6.2f}"
              for name, inclusive, self_mib in sorted(recorder.rows, key=lambda r: -r[2])[:top]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_rss", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="+", help="modules to import, in this order")
    parser.add_argument("--lazy", action="store_true",
                        help="install botworker.lazydeps first, as botworker.main does")
    parser.add_argument("--top", type=int, default=25, help="rows per table (default 25)")
    args = parser.parse_args(argv)
    if args.lazy:
        from botworker import lazydeps

        lazydeps.install()
        # The layer asks who imports by walking frames past the import machinery; this
        # module's finder and loader frames sit in between and must count as machinery too.
        lazydeps._IMPORT_MACHINERY = lazydeps._IMPORT_MACHINERY | {__name__}
    recorder = Recorder()
    finder = MeasuringFinder(recorder)
    sys.meta_path.insert(0, finder)
    start = rss_mib()
    try:
        for name in args.modules:
            importlib.import_module(name)
    finally:
        sys.meta_path.remove(finder)
    print("\n".join(report(recorder, rss_mib() - start, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
