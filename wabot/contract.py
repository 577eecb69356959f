"""The base of the contract's models and the helpers that put the CRD's own text on them.

wabot/spec.py (the spec), wabot/bot_commands.py (its chat commands), wabot/placement.py (the
pod placement types) and wabot/status.py (the status) build on these; wabot/crd.py turns the
models into the CRD.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict


def crd(*, item: str | JsonDict | None = None, value: str | None = None,
        list_type: str | None = None, map_keys: tuple[str, ...] = (),
        rules: tuple[JsonDict, ...] = (), fmt: str | None = None,
        properties: dict[str, str] | None = None) -> JsonDict:
    """A field's `json_schema_extra`: a partial schema node that wabot/crd.py merges over the
    one it derives from the field's type. `item` and `value` describe a list's items and a
    map's values (a string is their description), `properties` the nested fields' descriptions
    where one model serves two fields that explain it differently."""
    out: dict[str, Any] = {}
    if fmt is not None:
        out["format"] = fmt
    if list_type is not None:
        out["x-kubernetes-list-type"] = list_type
    if map_keys:
        out["x-kubernetes-list-map-keys"] = list(map_keys)
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    if item is not None:
        out["items"] = {"description": item} if isinstance(item, str) else item
    if value is not None:
        out["additionalProperties"] = {"description": value}
    if properties:
        out["properties"] = {k: {"description": v} for k, v in properties.items()}
    return out


def cel(rule: str, message: str, *, field_path: str | None = None,
        reason: str | None = None) -> JsonDict:
    """An x-kubernetes-validations rule: what the API server checks that a schema cannot."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SpecModel(Model):
    """A part of the spec, which people write by hand (bots file, database row, manifest).

    Strict: a value of the wrong type is an error, never coerced. In pydantic's default (lax)
    mode "20" became 20, "yes" and 1 became true and true became 1, so a bots file the API
    server would refuse (its schema types are exact) ran on the tiers without one, and a quoted
    "false" meant true. Kubernetes hands the operator and the worker exact JSON types, so
    strictness changes nothing for them. Status models stay lax: they read enum values and
    timestamps from JSON strings.
    """

    model_config = ConfigDict(strict=True)
