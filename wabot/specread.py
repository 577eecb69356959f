"""Reads parsed JSON into the generated views (wabot/spec_view.py, wabot/status_view.py) and
writes a view as the JSON its pydantic model would write, without pydantic.

The worker's read and write path (bench/PROFILE-density.md, "pydantic out of the worker"): the
spec it gets was validated and defaulted upstream (the API server by the CRD, the fleet tiers
by the models), and a hand-edited file is checked here for what the generated table holds:
unknown names, missing required ones, exact JSON types (no coercion: "20" is not 20 and 1 is
not true, as in the strict models of wabot/spec.py; timestamps and enums are read from their
JSON strings, as the lax status models do), bounds, lengths and patterns. The models'
cross-field rules (pairing by code needs a phone number, a custom command needs an answer,
reserved env names) are not repeated: the API server's CEL rules and the fleet's models check
them, and the worker only reads what they let through. The table
of each class's fields is generated with the classes (wabot/spec_codegen.py), so they cannot
drift.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

# (attribute, JSON name, shape, required); a shape is 'str' | 'int' | 'bool' | 'float' |
# 'datetime', a generated class, ('enum', cls), ('lit', values), ('opt', shape), ('list',
# shape), ('dict', shape) or ('chk', shape, {bound or pattern: value}).
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


def _datetime(value: object, where: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise SpecError(f"{where}: expected a date-time, got {str(value)[:64]!r}")


def _checked(value: Any, checks: dict[str, Any], where: str) -> Any:
    """The model's bounds and pattern (a hand-edited file with `perChatPerMinute: 0` stops
    with a clear line, not later in the rate limiter); values that are already None pass."""
    if value is None:
        return value
    size = len(value) if isinstance(value, str | tuple | dict) else None
    for key, limit in checks.items():
        if key == "pattern":
            if not re.search(limit, value):
                raise SpecError(f"{where}: {str(value)[:64]!r} does not match {limit}")
        elif key in ("min_len", "max_len"):
            if size is not None and (size < limit if key == "min_len" else size > limit):
                word = "at least" if key == "min_len" else "at most"
                unit = "character" if isinstance(value, str) else "item"
                raise SpecError(f"{where}: must have {word} {limit} {unit}"
                                f"{'' if limit == 1 else 's'}, got {size}")
        elif not {"ge": value >= limit, "le": value <= limit, "gt": value > limit,
                  "lt": value < limit}[key]:
            said = {"ge": "at least", "le": "at most", "gt": "more than", "lt": "less than"}
            raise SpecError(f"{where}: must be {said[key]} {limit}, got {value}")
    return value


def _value(shape: Any, value: object, where: str) -> Any:
    if shape == "datetime":
        return _datetime(value, where)
    if shape == "any":  # JSON data kept as it is (an event's session action record)
        return value
    if isinstance(shape, str):
        if type(value) not in _TYPES[shape]:  # exact: bool is not an int here
            raise SpecError(f"{where}: expected {_JSON_NAMES[_TYPES[shape][-1]]}, "
                            f"got {_kind(value)}")
        return value
    if isinstance(shape, type):
        return read(shape, value, where)
    if shape[0] == "chk":
        return _checked(_value(shape[1], value, where), shape[2], where)
    tag, inner = shape
    if tag == "enum":
        try:
            return inner(value)
        except ValueError:
            raise SpecError(f"{where}: expected one of {', '.join(m.value for m in inner)}, "
                            f"got {str(value)[:64]!r}") from None
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
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {_kind(data)}")
    fields = _shapes(cls)
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


def _shapes(cls: type) -> tuple[Shape, ...]:
    """The generated table of a generated class (its module's SHAPES)."""
    table: dict[type, tuple[Shape, ...]] = sys.modules[cls.__module__].SHAPES
    return table[cls]


def _json(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, enum.Enum):  # before str: WorkerState is a StrEnum
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):  # as pydantic writes it: UTC as Z
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [_json(v, exclude_none) for v in value]
    if isinstance(value, dict):
        return {k: _json(v, exclude_none) for k, v in value.items()}
    return dump(value, exclude_none=exclude_none)


def dump(obj: object, *, exclude_none: bool = False) -> dict[str, Any]:
    """A generated class's instance as JSON data by its JSON names: what the pydantic model's
    model_dump(mode="json", by_alias=True, exclude_none=...) gives for the same values. A
    pydantic model is dumped by itself (callers and tests may still hand one in)."""
    if hasattr(obj, "model_dump"):
        out: dict[str, Any] = obj.model_dump(mode="json", by_alias=True,
                                             exclude_none=exclude_none)
        return out
    cls = type(obj)
    get, aliases, nested = _PLANS.get(cls) or _plan(cls)
    values = get(obj)
    data = dict(zip(aliases, values, strict=True))
    for i in nested:  # only the fields whose shape is not a plain JSON value already
        if values[i] is not None:
            data[aliases[i]] = _json(values[i], exclude_none)
    if exclude_none:
        return {k: v for k, v in data.items() if v is not None}
    return data


_PLAIN_SHAPES = ("str", "int", "bool", "float")
_Plan = tuple[Callable[[Any], tuple[Any, ...]], tuple[str, ...], tuple[int, ...]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """How dump() writes `cls`, worked out once from its table: a webhook event is written on
    the pipeline thread, and a field-by-field loop cost 11 us for a text message's data."""
    shapes = _shapes(cls)
    attrs = [attr for attr, _, _, _ in shapes]
    getter = attrgetter(*attrs) if attrs else (lambda obj: ())
    get: Callable[[Any], tuple[Any, ...]] = (getter if len(attrs) != 1
                                             else lambda obj: (getter(obj),))
    nested = tuple(i for i, (_, _, shape, _) in enumerate(shapes) if not _plain(shape))
    plan = _PLANS[cls] = (get, tuple(alias for _, alias, _, _ in shapes), nested)
    return plan


def _plain(shape: Any) -> bool:
    """A value of this shape is its own JSON (a string, number, boolean, literal or null)."""
    if isinstance(shape, str):
        return shape in _PLAIN_SHAPES
    if isinstance(shape, tuple) and shape[0] in ("opt", "chk"):
        return _plain(shape[1])
    return isinstance(shape, tuple) and shape[0] == "lit"


def json_bytes(data: dict[str, Any], float_keys: tuple[str, ...] = ()) -> bytes:
    """`data` (dump()'s) as the bytes pydantic's model_dump_json(by_alias=True) writes: compact,
    UTF-8 unescaped. For the numbers under `float_keys`, pydantic's way too: a non-finite one is
    null, and where Python writes an exponent of one digit pydantic writes 1.5e-5 as 0.000015
    and 1e-07 as 1e-7. A key followed by `:` cannot occur inside a JSON string (its quote
    would be escaped)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if float_keys and ("e-0" in text or "Infinity" in text or "NaN" in text):
        keys = "|".join(re.escape(k) for k in float_keys)
        text = re.sub(f'("(?:{keys})":)(?:-?Infinity|NaN)', r"\1null", text)
        text = re.sub(f'("(?:{keys})":)(-?)([0-9.]+)e-0([0-9])(?![0-9])', _small_float, text)
    return text.encode()


def _small_float(m: re.Match[str]) -> str:
    key, sign, mantissa, exp = m.groups()
    if exp == "5":  # 1.5e-05 -> 0.000015
        return f"{key}{sign}0.0000{mantissa.replace('.', '')}"
    return f"{key}{sign}{mantissa}e-{exp}"
