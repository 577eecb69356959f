"""neonize's optional dependencies, loaded when first used instead of when neonize is imported.

`import neonize.client` imports its whole toolbox: PIL, python-magic, linkpreview (with
requests, bs4, soupsieve, charset_normalizer), httpx (with rich, click, pygments), phonenumbers,
tqdm and segno, some 300 modules and ~15 MiB RSS that a bot answering text commands never
touches: they serve media, link previews, vCards, downloads and the pairing QR code. wabot may
not fork neonize or patch its installed files, so this layer sits in front of the import
system instead (`install()`, called before neonize is first imported):

- While a *neonize* module is being imported, an import of one of `DEFERRED` gets a stand-in
  module, and the names neonize takes from it (`from PIL import Image, ImageSequence`,
  `from linkpreview import link_preview`) are stand-ins too. Nothing of the package runs.
- The first real use of a stand-in from anywhere (`Image.open(...)`, `magic.from_buffer(...)`,
  `link_preview(url)`) imports the real package the ordinary way, puts it in `sys.modules` in
  place of the stand-in, and forwards; from then on the stand-in is a thin forwarder.
- Anyone else's import of those packages (a plugin's `from PIL import Image`) is left alone:
  it gets the real modules, before or after neonize has been imported.

So neonize's media builders (images, stickers, documents, previews) work as before; they pay
the import on the first media message instead of at start. `tests/worker/test_lazydeps.py`
runs neonize's builders under the layer in a fresh interpreter.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import FrameType, ModuleType
from typing import Any, Union

# The packages neonize imports at `import neonize.client` / `neonize.events` / `neonize.utils`
# and uses only inside functions (read from neonize 0.5.2's sources: client.py, events.py,
# download.py, utils/{__init__,enum,calc,iofile,sticker}.py). bs4, rich, click, pygments,
# charset_normalizer, soupsieve and urllib3 are only ever imported through these. Not asyncio
# (also imported only by neonize, ~1 MiB): neonize.utils.sticker calls asyncio.Semaphore(20)
# at import, a real use that would load it anyway.
DEFERRED = frozenset({"PIL", "magic", "linkpreview", "httpx", "requests", "phonenumbers",
                      "tqdm", "segno"})
# Whose imports are deferred: neonize's own modules, nobody else's.
IMPORTERS = ("neonize",)
_IMPORT_MACHINERY = frozenset({"importlib._bootstrap", "importlib._bootstrap_external",
                               "_frozen_importlib", "_frozen_importlib_external", __name__})
# Dunder reads that mean "use the package" (import a submodule, `import *`, a version check);
# any other dunder a stand-in lacks is missing, as on a module without it.
_LOADING_DUNDERS = frozenset({"__path__", "__all__", "__version__"})
_lock = threading.Lock()
_loaded: set[str] = set()  # roots whose real package has been imported since install()


def _caller(depth: int = 2) -> FrameType | None:
    """The first frame outside the import machinery and this module: who is importing or
    reading an attribute."""
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None and frame.f_globals.get("__name__") in _IMPORT_MACHINERY:
        frame = frame.f_back
    return frame


def _neonize_importing(frame: FrameType | None) -> bool:
    """True while `frame` runs the body of a neonize module that is being imported (its
    module code, a class body or a default argument in it)."""
    if frame is None:
        return False
    name = frame.f_globals.get("__name__", "")
    if not any(name == p or name.startswith(p + ".") for p in IMPORTERS):
        return False
    spec = frame.f_globals.get("__spec__")
    return bool(getattr(spec, "_initializing", False))


def _in_neonize_import() -> bool:
    """True when some frame of this thread runs a neonize module body under import: the
    only time stand-ins are handed out instead of real objects (also to what that body calls,
    such as `typing.Union` probing an annotation's dunders)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if _neonize_importing(frame):
            return True
        frame = frame.f_back
    return False


def _real_locations(fullname: str) -> Sequence[str] | None:
    """Where the real package's submodules are, found without running the package."""
    root, _, rest = fullname.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(root)
    for part in rest.split(".") if rest else ():
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(f"{spec.name}.{part}",
                                                        spec.submodule_search_locations)
    return None if spec is None else spec.submodule_search_locations


class _Deferred:
    """Common part of the two stand-ins: the real object, imported on first use."""

    __slots__ = ()

    def _real(self) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._real()(*args, **kwargs)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._real())

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self._real())

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self._real(),)

    # `def f(fn: str | BytesIO | Image.Image)` in a module without postponed annotations:
    # the annotation is evaluated at import time and must not need the real class.
    def __or__(self, other: Any) -> Any:
        return Union[self, other]  # noqa: UP007 (`|` is what is being defined)

    def __ror__(self, other: Any) -> Any:
        return Union[other, self]  # noqa: UP007


class DeferredModule(ModuleType):
    """Stands in for a package (or a submodule of it) neonize imported but has not used."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        object.__setattr__(self, "_deferred_real", None)
        object.__setattr__(self, "_deferred_children", {})

    def _real(self) -> ModuleType:
        real: ModuleType | None = object.__getattribute__(self, "_deferred_real")
        if real is None:
            name = object.__getattribute__(self, "__name__")
            root = name.partition(".")[0]
            with _lock:
                _loaded.add(root)
                for key in (root, name):
                    if isinstance(sys.modules.get(key), DeferredModule):
                        del sys.modules[key]
            real = importlib.import_module(name)
            object.__setattr__(self, "_deferred_real", real)
        return real

    def __getattr__(self, attr: str) -> Any:
        # Only reached for what the stand-in does not hold itself (__name__, __spec__, the
        # stand-ins it handed out).
        if attr.startswith("__") and attr not in _LOADING_DUNDERS:
            raise AttributeError(attr)  # `__file__`, `__wrapped__`: tools probing modules
        if object.__getattribute__(self, "_deferred_real") is None and _in_neonize_import():
            if attr == "__path__" and sys._getframe(1).f_code.co_name == (
                    "_find_and_load_unlocked"):
                # `import requests.exceptions` (neonize.aioze): a submodule of the package
                # itself is wanted, which needs the real package.
                return getattr(self._real(), attr)
            if attr.startswith("__"):
                # `from PIL import Image`: importlib asks for __path__ before it imports
                # submodules; without one, `Image` is read as an attribute (below).
                raise AttributeError(attr)
            # Kept aside, not in the module's namespace: once the real package is loaded,
            # everyone else must get its real objects.
            children = object.__getattribute__(self, "_deferred_children")
            if attr not in children:
                children[attr] = self._stand_in(attr)
            return children[attr]
        return getattr(self._real(), attr)

    def _stand_in(self, attr: str) -> Any:
        """A stand-in for `attr`: a submodule (`PIL.Image`) or a name in the package."""
        name = object.__getattribute__(self, "__name__")
        locations = _real_locations(name)
        if locations is not None and importlib.machinery.PathFinder.find_spec(
                f"{name}.{attr}", locations) is not None:
            return DeferredModule(f"{name}.{attr}")
        return DeferredAttribute(self, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr.startswith("__") or object.__getattribute__(self, "_deferred_real") is None:
            object.__setattr__(self, attr, value)
        else:
            setattr(self._real(), attr, value)

    def __dir__(self) -> list[str]:
        return dir(self._real())

    def __repr__(self) -> str:
        name = object.__getattribute__(self, "__name__")
        state = "loaded" if object.__getattribute__(self, "_deferred_real") else "deferred"
        return f"<module {name!r} ({state} by botworker.lazydeps)>"


class DeferredAttribute(_Deferred):
    """A name neonize took from a deferred package at import time (`link_preview`,
    `PhoneNumberFormat`, `tqdm`): calls, attribute reads and isinstance checks go to the
    real object."""

    __slots__ = ("_attr", "_module", "_value")

    def __init__(self, module: DeferredModule, attr: str) -> None:
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_attr", attr)
        object.__setattr__(self, "_value", None)

    def _real(self) -> Any:
        value = object.__getattribute__(self, "_value")
        if value is None:
            module = object.__getattribute__(self, "_module")
            value = getattr(module._real(), object.__getattribute__(self, "_attr"))
            object.__setattr__(self, "_value", value)
        return value

    def __getattr__(self, attr: str) -> Any:
        if (attr.startswith("__") and object.__getattribute__(self, "_value") is None
                and _in_neonize_import()):
            raise AttributeError(attr)  # typing probing an annotation, not a use
        return getattr(self._real(), attr)

    def __repr__(self) -> str:
        module = object.__getattribute__(self, "_module")
        return f"<deferred {module.__name__}.{object.__getattribute__(self, '_attr')}>"


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return DeferredModule(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing runs until the module is used."""


class DeferringFinder(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path`: answers only for a `DEFERRED` package imported by neonize
    while neither it nor the real package is loaded."""

    _loader = _Loader()

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in DEFERRED or fullname in _loaded:
            return None
        if not _neonize_importing(_caller()):
            return None
        if importlib.machinery.PathFinder.find_spec(fullname) is None:
            return None  # not installed: let the ordinary import fail as it would
        return importlib.machinery.ModuleSpec(fullname, self._loader)


def install() -> bool:
    """Put the layer in front of the import system; True when it can still pay off (neonize
    not imported yet). Idempotent."""
    if not any(isinstance(f, DeferringFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, DeferringFinder())
    return "neonize" not in sys.modules


def deferred() -> list[str]:
    """The packages still standing in (not loaded): for the benchmark and the tests."""
    return sorted(name for name, mod in list(sys.modules.items())
                  if isinstance(mod, DeferredModule))
