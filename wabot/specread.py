"""Reads a spec (parsed JSON or YAML) into wabot/spec_view.py's dataclasses without pydantic.

The worker's read path (bench/PROFILE-density.md, "pydantic out of the worker"): what it gets
was validated and defaulted upstream, so this checks only what keeps a hand-edited file from
becoming a traceback: unknown names, missing required ones, and exact JSON types (no coercion:
"20" is not 20 and 1 is not true, as in the strict models of wabot/spec.py). The table of each
class's fields is generated with the classes (wabot/spec_codegen.py), so the two cannot drift.
"""

from __future__ import annotations

from typing import Any, TypeVar

# (attribute, JSON name, shape, required); a shape is 'str' | 'int' | 'bool' | 'float', a
# generated class, ('lit', values), ('opt', shape), ('list', shape) or ('dict', shape).
Shape = tuple[str, str, Any, bool]

T = TypeVar("T")


class SpecError(ValueError):
    """A spec the worker cannot read; the message names the field (spec.webhook.url: ...)."""


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,),
                                       "float": (int, float)}
_JSON_NAMES = {str: "a string", int: "an integer", bool: "a boolean", float: "a number",
               list: "a list", dict: "a mapping", type(None): "null"}


def _kind(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _value(shape: Any, value: object, where: str) -> Any:
    if isinstance(shape, str):
        if type(value) not in _TYPES[shape]:  # exact: bool is not an int here
            raise SpecError(f"{where}: expected {_JSON_NAMES[_TYPES[shape][-1]]}, "
                            f"got {_kind(value)}")
        return value
    if isinstance(shape, type):
        return read(shape, value, where)
    tag, inner = shape
    if tag == "opt":
        return None if value is None else _value(inner, value, where)
    if tag == "lit":
        if not isinstance(value, str | int | bool) or value not in inner:
            raise SpecError(f"{where}: expected one of {', '.join(map(str, inner))}, "
                            f"got {str(value)[:64]!r}")
        return value
    if tag == "list":
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list, got {_kind(value)}")
        return tuple(_value(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tag == "dict":
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                raise SpecError(f"{where}: the key {k!r} is not a string")
        return {k: _value(inner, v, f"{where}.{k}") for k, v in value.items()}
    raise AssertionError(f"unknown shape {shape!r}")  # the generator writes only the above


def read(cls: type[T], data: object, where: str = "spec") -> T:
    """`data` as an instance of a generated class; absent fields take the class's defaults."""
    from wabot.spec_view import SHAPES

    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {_kind(data)}")
    fields = SHAPES[cls]
    known = {name for attr, alias, _, _ in fields for name in (attr, alias)}
    for key in data:
        if key not in known:
            raise SpecError(f"{where}.{key}: unknown field")
    kwargs: dict[str, Any] = {}
    for attr, alias, shape, required in fields:
        name = alias if alias in data else attr  # both, as pydantic's populate_by_name
        if name in data:
            kwargs[attr] = _value(shape, data[name], f"{where}.{alias}")
        elif required:
            raise SpecError(f"{where}.{alias}: required")
    return cls(**kwargs)
