"""The webhook deliveries' JSON schemas (wabot.events) in the OpenAPI 3.0 dialect of
gateway/openapi.yaml, so the document is generated from the models and cannot drift from them
(tests/contract/test_webhook_schemas.py compares the two).

    python -m wabot.webhook_schema     # print the components and x-webhooks to paste

Every field is listed as required: a delivery always carries every field, null when unset.
"""

from __future__ import annotations

from typing import Any

from .events import EVENT_DATA, WebhookPayload

REF = "#/components/schemas/"


def components() -> dict[str, Any]:
    """components.schemas entries: WebhookPayload and every model it refers to."""
    raw = WebhookPayload.model_json_schema(by_alias=True, mode="serialization",
                                           ref_template=REF + "{model}")
    defs = raw.pop("$defs", {})
    out = {name: _openapi30(schema) for name, schema in sorted(defs.items())}
    out["WebhookPayload"] = _openapi30(raw)
    return out


def webhooks() -> dict[str, Any]:
    """x-webhooks: one POST per event, its payload's `data` pinned to the event's model."""
    out: dict[str, Any] = {}
    for event, model in EVENT_DATA.items():
        out[event] = {"post": {
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "allOf": [{"$ref": REF + "WebhookPayload"}, {
                    "type": "object",
                    "properties": {"event": {"type": "string", "enum": [event]},
                                   "data": {"$ref": REF + model.__name__}}}]}}}},
            "responses": {"2XX": {"description": "Delivered (any 2xx); anything else is "
                                                 "retried with backoff."}},
        }}
    return out


def _openapi30(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema as pydantic writes it -> the OpenAPI 3.0 subset (nullable, no titles)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default"):
            continue
        if key == "description":
            out[key] = " ".join(value.split())
            continue
        if key == "properties":
            out[key] = {name: _openapi30(prop) for name, prop in value.items()}
            out["required"] = list(value)
        elif key == "required":
            continue
        elif key == "items":
            out[key] = _openapi30(value)
        elif key == "const":
            out["enum"] = [value]
        elif key == "anyOf":
            options = [o for o in value if o.get("type") != "null"]
            nullable = len(options) < len(value)
            if len(options) == 1:
                inner = _openapi30(options[0])
                if "$ref" in inner:
                    inner = {"allOf": [inner]}
                out.update(inner)
            else:
                out["anyOf"] = [_openapi30(o) for o in options]
            if nullable:
                out["nullable"] = True
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        kinds = {type(v) for v in out["enum"]}
        out["type"] = "integer" if kinds == {int} else "string"
    return out


def main() -> None:
    import yaml

    def dump(obj: Any, indent: int) -> str:
        text = yaml.safe_dump(obj, sort_keys=False, width=100, allow_unicode=True)
        return "".join(" " * indent + line if line.strip() else line
                       for line in text.splitlines(keepends=True))

    print("# components.schemas:")
    print(dump(components(), 4), end="")
    print("x-webhooks:")
    print(dump(webhooks(), 2), end="")


if __name__ == "__main__":
    main()
