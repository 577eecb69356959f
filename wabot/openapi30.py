"""JSON Schema as pydantic writes it -> the OpenAPI 3.0 dialect of gateway/openapi.yaml: the
one conversion behind the generated parts of that document (wabot/api_schema.py for the send
API, wabot/webhook_schema.py for the deliveries), so a rule of the dialect is written once.

OpenAPI 3.0 has `nullable` instead of a null type, no `const`, and no `$ref` beside other
keys; titles and defaults are left out (the models' descriptions say what a default means).
"""

from __future__ import annotations

from typing import Any, Literal


def openapi30(schema: dict[str, Any], *, required: Literal["model", "all"] = "model",
              closed: bool = False) -> dict[str, Any]:
    """`schema` in OpenAPI 3.0. `required`: "model" keeps pydantic's list (an answer leaves out
    what it does not know), "all" lists every property (a delivery carries each, null when
    unset). `closed`: an object with properties takes no others (the models forbid extra
    fields)."""
    def inner(value: dict[str, Any]) -> dict[str, Any]:
        return openapi30(value, required=required, closed=closed)

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default") or (key == "required" and required == "all"):
            continue
        if key == "description":
            out[key] = " ".join(value.split())
        elif key == "properties":
            out[key] = {name: inner(prop) for name, prop in value.items()}
            if required == "all":
                out["required"] = list(value)
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = inner(value)
        elif key == "const":
            out["enum"] = [value]
        elif key == "anyOf":
            options = [o for o in value if o.get("type") != "null"]
            one = inner(options[0]) if len(options) == 1 else {
                "anyOf": [inner(o) for o in options]}
            out.update({"allOf": [one]} if "$ref" in one else one)
            if len(options) < len(value):
                out["nullable"] = True
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        kinds = {type(v) for v in out["enum"]}
        out["type"] = "integer" if kinds == {int} else "string"
    if closed and out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out


def dump(obj: Any, indent: int) -> str:
    """`obj` as YAML indented by `indent` spaces, to paste into gateway/openapi.yaml."""
    import yaml

    text = yaml.safe_dump(obj, sort_keys=False, width=100, allow_unicode=True)
    return "".join(" " * indent + line if line.strip() else line
                   for line in text.splitlines(keepends=True))
