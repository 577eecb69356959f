"""Properties of the one contract that the CRD's OpenAPI schema must have.

The CRD is generated from the models in wabot/spec.py (wabot/crd.py; test_crd_generated.py
keeps the committed file equal to the output), so fields, types and bounds cannot drift apart.
What generation alone does not promise is checked here: the API server's defaulting gives a
spec the model's defaults, `kubectl explain` has a text for every node, every string, list and
map is bounded (CEL cost, etcd size), the CEL rules and printer columns say what they must.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from wabot import spec as models

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "whatsappbot.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return doc


@pytest.fixture(scope="module")
def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


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


def test_status_defaults_like_the_model(root_schema: dict[str, Any]) -> None:
    status_schema = root_schema["properties"]["status"]
    given = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Connected",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "worker": {"state": "Connected", "updatedAt": "2026-01-01T00:00:00Z"},
    }
    defaulted = apply_defaults(status_schema, given)
    model = models.WhatsAppBotStatus.model_validate(given)
    want = _prune(model.model_dump(mode="json", by_alias=True, exclude_none=True))
    # the model writes datetimes back in its own spelling; the API server keeps the text
    want["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    want["worker"]["updatedAt"] = "2026-01-01T00:00:00Z"
    assert _prune(defaulted) == want


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
