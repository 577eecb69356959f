"""The send API's request and response schemas (wabot.api) in the OpenAPI 3.0 dialect of
gateway/openapi.yaml, generated from the models so the document cannot drift from what the
gateway and the worker validate (tests/contract/test_api_schemas.py compares the two).

    python -m wabot.api_schema     # print the components.schemas entries to paste

What a schema cannot say (exactly one kind per request, `url` or an upload, which fields a
kind takes) is the models' validators' job; their descriptions say it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from .api import (
    SEND_KINDS,
    ChatActionResponse,
    PresenceRequest,
    ReadRequest,
    SendMessageRequest,
    SendMessageResponse,
)

REF = "#/components/schemas/"
MODELS: tuple[type[BaseModel], ...] = (SendMessageRequest, SendMessageResponse, ReadRequest,
                                       PresenceRequest, ChatActionResponse)


def components() -> dict[str, Any]:
    """components.schemas entries: the send API's models and every model they refer to."""
    out: dict[str, Any] = {}
    for model in MODELS:
        mode: Literal["validation", "serialization"] = (
            "serialization" if model.__name__.endswith("Response") else "validation")
        raw = model.model_json_schema(by_alias=True, mode=mode, ref_template=REF + "{model}")
        for name, schema in raw.pop("$defs", {}).items():
            out[name] = _openapi30(schema)
        out[model.__name__] = _openapi30(raw)
    request = out["SendMessageRequest"]
    for kind in SEND_KINDS:  # exactly one kind, and not null (the model's _one_kind)
        request["properties"][kind].pop("nullable", None)
    request["oneOf"] = [{"required": [kind]} for kind in SEND_KINDS]
    return dict(sorted(out.items()))


def _openapi30(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema as pydantic writes it -> OpenAPI 3.0 (nullable, no titles, pydantic's own
    `required`, closed objects as the models forbid extra fields)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "default"):
            continue
        if key == "description":
            out[key] = " ".join(value.split())
        elif key == "properties":
            out[key] = {name: _openapi30(prop) for name, prop in value.items()}
        elif key == "items":
            out[key] = _openapi30(value)
        elif key == "const":
            out["enum"] = [value]
        elif key == "anyOf":
            options = [o for o in value if o.get("type") != "null"]
            inner = _openapi30(options[0]) if len(options) == 1 else {
                "anyOf": [_openapi30(o) for o in options]}
            out.update({"allOf": [inner]} if "$ref" in inner else inner)
            if len(options) < len(value):
                out["nullable"] = True
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out


def main() -> None:
    import yaml

    text = yaml.safe_dump(components(), sort_keys=False, width=100, allow_unicode=True)
    print("# components.schemas:")
    print("".join("    " + line if line.strip() else line
                  for line in text.splitlines(keepends=True)), end="")


if __name__ == "__main__":
    main()
