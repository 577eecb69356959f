"""The CRD's OpenAPI schema and the pydantic models in wabot/spec.py describe one contract.

The API server validates with the first, every tier without Kubernetes with the second; if they
drift, a bot file accepted by the monolith is refused by `kubectl apply` (or worse, the
operator reads a spec the model rejects). These tests walk both trees side by side: same
fields, same required fields, same types, same bounds, same defaults, at every level.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from wabot import spec as models

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "whatsappbot.yaml"
CONSTRAINT_KEYS = (
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "maxProperties",
    "minimum", "maximum", "enum",
)


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return doc


@pytest.fixture(scope="module")
def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


# --- reading a pydantic annotation as a schema-like shape ----------------------------------


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Strip Annotated[...] (collecting its constraints) and Optional[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *extras = typing.get_args(annotation)
            for extra in extras:
                found = extra.metadata if isinstance(extra, FieldInfo) else [extra]
                metadata = [*metadata, *found]
            annotation = base
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            assert len(args) == 1, f"unions other than Optional are not modelled: {annotation}"
            annotation = args[0]
        else:
            return annotation, metadata


def _constraints(annotation: Any, metadata: list[Any]) -> dict[str, Any]:
    """The model's bounds under the names the OpenAPI schema uses for this type."""
    origin = typing.get_origin(annotation)
    length_names = (
        ("maxItems", "minItems") if origin is list
        else ("maxProperties", "minProperties") if origin is dict
        else ("maxLength", "minLength")
    )
    out: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, annotated_types.MaxLen):
            out[length_names[0]] = m.max_length
        elif isinstance(m, annotated_types.MinLen):
            out[length_names[1]] = m.min_length
        elif isinstance(m, annotated_types.Ge):
            out["minimum"] = m.ge
        elif isinstance(m, annotated_types.Le):
            out["maximum"] = m.le
        elif getattr(m, "pattern", None) is not None:
            out["pattern"] = m.pattern
        elif isinstance(m, annotated_types.BaseMetadata):
            raise AssertionError(f"constraint {m!r} has no counterpart in this test yet")
    if typing.get_origin(annotation) is Literal:
        out["enum"] = list(typing.get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        out["enum"] = [e.value for e in annotation]
    return out


def _schema_constraints(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: schema[k] for k in CONSTRAINT_KEYS if k in schema}


def _compare(schema: dict[str, Any], annotation: Any, metadata: list[Any], path: str,
             errors: list[str]) -> None:
    annotation, metadata = _unwrap(annotation, metadata)
    if not schema.get("description"):
        errors.append(f"{path}: no description")
    origin = typing.get_origin(annotation)
    want = _constraints(annotation, metadata)
    have = _schema_constraints(schema)
    if want != have:
        errors.append(f"{path}: bounds differ: model {want} != CRD {have}")

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if schema.get("type") != "object":
            errors.append(f"{path}: model {annotation.__name__} but CRD type {schema.get('type')}")
            return
        _compare_model(schema, annotation, path, errors)
    elif origin is list:
        if schema.get("type") != "array":
            errors.append(f"{path}: list but CRD type {schema.get('type')}")
            return
        (item,) = typing.get_args(annotation)
        _compare(schema["items"], item, [], f"{path}[]", errors)
    elif origin is dict:
        key, value = typing.get_args(annotation)
        assert key is str, path
        if schema.get("type") != "object":
            errors.append(f"{path}: dict but CRD type {schema.get('type')}")
        elif value is object:
            if not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}: free-form dict but CRD prunes unknown fields")
        elif "additionalProperties" not in schema or "properties" in schema:
            errors.append(f"{path}: dict but CRD has no additionalProperties")
        else:
            _compare(schema["additionalProperties"], value, [], f"{path}{{}}", errors)
    else:
        expected = _scalar_type(annotation, path)
        actual = (schema.get("type"), schema.get("format"))
        if actual == ("integer", "int64"):
            actual = ("integer", None)  # a width hint for clients, not a different type
        if actual != expected:
            errors.append(f"{path}: model {expected} != CRD {actual}")


def _scalar_type(annotation: Any, path: str) -> tuple[str, str | None]:
    if annotation is bool:
        return ("boolean", None)
    if annotation is int:
        return ("integer", None)
    if annotation is datetime:
        return ("string", "date-time")
    if annotation is str or typing.get_origin(annotation) is Literal:
        return ("string", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.StrEnum):
        return ("string", None)
    raise AssertionError(f"{path}: no OpenAPI type known for {annotation!r}")


def _compare_model(schema: dict[str, Any], model: type[BaseModel], path: str,
                   errors: list[str]) -> None:
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    props: dict[str, Any] = schema.get("properties", {})
    if set(fields) != set(props):
        errors.append(
            f"{path}: fields differ: only in model {sorted(set(fields) - set(props))}, "
            f"only in CRD {sorted(set(props) - set(fields))}"
        )
    required = sorted(a for a, f in fields.items() if f.is_required())
    if required != sorted(schema.get("required", [])):
        errors.append(f"{path}: required {required} != CRD {sorted(schema.get('required', []))}")
    for alias, field in fields.items():
        if alias not in props:
            continue
        sub = props[alias]
        _compare(sub, field.annotation, list(field.metadata), f"{path}.{alias}", errors)
        _compare_default(sub, field, f"{path}.{alias}", errors)


def _compare_default(schema: dict[str, Any], field: FieldInfo, path: str,
                     errors: list[str]) -> None:
    """A model default must be the CRD default (after the API server's nested defaulting);
    None and empty collections are the same as an absent field on both sides."""
    if field.is_required():
        if "default" in schema:
            errors.append(f"{path}: required in the model but defaulted in the CRD")
        return
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        want: Any = _prune(value.model_dump(mode="json", by_alias=True, exclude_none=True))
    elif isinstance(value, enum.Enum):
        want = value.value
    else:
        want = value
    if want is None or want == [] or want == {}:
        if "default" in schema and not (schema["default"] == {} and schema["type"] == "object"):
            errors.append(f"{path}: model default {value!r} but CRD default {schema['default']!r}")
        return
    if "default" not in schema:
        errors.append(f"{path}: model default {want!r} but no CRD default")
        return
    got = _prune(apply_defaults(schema, schema["default"]))
    if got != want:
        errors.append(f"{path}: model default {want!r} != CRD default {got!r}")


# --- the API server's structural defaulting, enough of it to compare ----------------------


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Defaults as the API server applies them: a missing property with a default gets it,
    then defaulting continues inside every present object and array item."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = sub["default"]
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        if "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
            extra = {k: v for k, v in out.items() if k not in schema.get("properties", {})}
            for k, v in extra.items():
                out[k] = apply_defaults(schema["additionalProperties"], v)
        return out
    if isinstance(value, list) and schema.get("type") == "array":
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _prune(value: Any) -> Any:
    """Drop empty lists and dicts: absent and empty mean the same to both sides."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ([], {})}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


# --- tests ---------------------------------------------------------------------------------


def test_names_and_scope(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{models.PLURAL}.{models.API_GROUP}"
    s = crd["spec"]
    assert (s["group"], s["scope"]) == (models.API_GROUP, "Namespaced")
    assert s["names"]["kind"] == models.KIND
    assert s["names"]["plural"] == models.PLURAL
    assert s["names"]["shortNames"] == ["wab"]
    assert s["names"]["categories"] == ["wabot"]
    (version,) = s["versions"]
    assert version["name"] == models.API_VERSION
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_spec_schema_matches_model_at_every_level(root_schema: dict[str, Any]) -> None:
    errors: list[str] = []
    _compare_model(root_schema["properties"]["spec"], models.WhatsAppBotSpec, "spec", errors)
    assert not errors, "\n".join(errors)


def test_status_schema_matches_model_at_every_level(root_schema: dict[str, Any]) -> None:
    errors: list[str] = []
    _compare_model(root_schema["properties"]["status"], models.WhatsAppBotStatus, "status",
                   errors)
    assert not errors, "\n".join(errors)


def test_the_walker_notices_drift(root_schema: dict[str, Any]) -> None:
    """Guards the guard: a renamed field, a changed bound or default must be reported."""
    import copy

    spec = copy.deepcopy(root_schema["properties"]["spec"])
    spec["properties"]["rateLimit"]["properties"]["perChatPerMinute"]["maximum"] = 601
    spec["properties"]["settings"]["properties"]["autoReadX"] = spec["properties"][
        "settings"]["properties"].pop("autoRead")
    spec["properties"]["commands"]["properties"]["prefix"]["default"] = "?"
    del spec["properties"]["pairing"]["properties"]["method"]["description"]
    errors: list[str] = []
    _compare_model(spec, models.WhatsAppBotSpec, "spec", errors)
    text = "\n".join(errors)
    assert "spec.rateLimit.perChatPerMinute: bounds differ" in text
    assert "autoReadX" in text and "autoRead" in text
    assert "spec.commands.prefix: model default '!' != CRD default '?'" in text
    assert "spec.pairing.method: no description" in text


def test_minimal_spec_defaults_like_the_model(root_schema: dict[str, Any]) -> None:
    spec_schema = root_schema["properties"]["spec"]
    minimal = {"serverName": "acme"}
    defaulted = apply_defaults(spec_schema, minimal)
    model = models.WhatsAppBotSpec.model_validate(minimal)
    assert _prune(defaulted) == _prune(model.model_dump(mode="json", by_alias=True,
                                                         exclude_none=True))


def test_nested_defaults_inside_lists_like_the_model(root_schema: dict[str, Any]) -> None:
    spec_schema = root_schema["properties"]["spec"]
    given = {
        "serverName": "acme",
        "commands": {"custom": [{"name": "hi", "response": "hello"}]},
        "webhook": {"url": "https://example.com/h", "secretRef": {"name": "hook"}},
        "env": [{"name": "EMPTY"}],
        "database": {"secretRef": {"name": "db"}},
    }
    defaulted = apply_defaults(spec_schema, given)
    model = models.WhatsAppBotSpec.model_validate(given)
    assert _prune(defaulted) == _prune(model.model_dump(mode="json", by_alias=True,
                                                         exclude_none=True))


def test_every_schema_node_is_described(root_schema: dict[str, Any]) -> None:
    """`kubectl explain whatsappbot.spec...` must teach every field."""
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if path != "metadata" and not node.get("description"):
            missing.append(path or "<root>")
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}" if path else name)
        if "items" in node:
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(root_schema, "")
    assert not missing, missing


def test_every_string_list_and_map_is_bounded(root_schema: dict[str, Any]) -> None:
    """CEL rules are refused when their cost estimate is unbounded, and an unbounded spec lets
    one bot put megabytes into etcd. Enums, formats and patterns with a fixed length count."""
    unbounded: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        t = node.get("type")
        if t == "string" and not (
            {"maxLength", "enum", "format"} & node.keys()
            or re.search(r"\{\d+,\d+\}\$$", node.get("pattern", ""))
        ):
            unbounded.append(path)
        if t == "array" and "maxItems" not in node:
            unbounded.append(path)
        if t == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(root_schema["properties"]["spec"], "spec")
    assert not unbounded, unbounded


def test_cel_rules_cover_the_contract(root_schema: dict[str, Any]) -> None:
    spec = root_schema["properties"]["spec"]
    from wabot.naming import MAX_BOT_NAME

    # A schema bound, so the API server names the field in its error (a CEL rule at the root
    # printed "<nil>: Invalid value").
    assert root_schema["properties"]["metadata"]["properties"]["name"]["maxLength"] == (
        MAX_BOT_NAME)
    server = spec["properties"]["serverName"]["x-kubernetes-validations"]
    assert any(r["rule"] == "self == oldSelf" and "immutable" in r["message"] for r in server)
    # At the root: the default (metadata.name) is part of the rule, so writing it out is no
    # change.
    bot_id = [r for r in root_schema["x-kubernetes-validations"]
              if r.get("fieldPath") == ".spec.botId"]
    assert bot_id and "oldSelf.metadata.name" in bot_id[0]["rule"]
    assert "immutable" in bot_id[0]["message"]
    pairing = spec["properties"]["pairing"]["x-kubernetes-validations"]
    assert any("phoneNumber" in r["rule"] and r["fieldPath"] == ".phoneNumber" for r in pairing)


def test_printer_columns_point_at_schema_fields(crd: dict[str, Any],
                                                root_schema: dict[str, Any]) -> None:
    (version,) = crd["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Server", "Phase", "Account", "Ready", "Age", "Pod", "Restarts",
                             "Last-Connected", "Problem"]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1]
    assert wide == ["Pod", "Restarts", "Last-Connected", "Problem"]  # -o wide only
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Problem"] == '.status.conditions[?(@.type=="Degraded")].reason'
    for name, path in columns.items():
        if name in ("Age", "Ready", "Problem"):
            continue
        node = root_schema
        for part in path.strip(".").split("."):
            assert part in node.get("properties", {}), f"{name}: {path} not in the schema"
            node = node["properties"][part]


def test_status_conditions_are_a_map_keyed_by_type(root_schema: dict[str, Any]) -> None:
    conditions = root_schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
