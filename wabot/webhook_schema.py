"""The webhook deliveries' JSON schemas (wabot.events) in the OpenAPI 3.0 dialect of
gateway/openapi.yaml, so the document is generated from the models and cannot drift from them
(tests/contract/test_webhook_schemas.py compares the two).

    python -m wabot.webhook_schema     # print the components and x-webhooks to paste

Every field is listed as required: a delivery always carries every field, null when unset.
"""

from __future__ import annotations

from typing import Any

from .events import EVENT_DATA, WebhookPayload
from .openapi30 import dump, openapi30

REF = "#/components/schemas/"


def components() -> dict[str, Any]:
    """components.schemas entries: WebhookPayload and every model it refers to."""
    raw = WebhookPayload.model_json_schema(by_alias=True, mode="serialization",
                                           ref_template=REF + "{model}")
    defs = raw.pop("$defs", {})
    out = {name: openapi30(schema, required="all") for name, schema in sorted(defs.items())}
    out["WebhookPayload"] = openapi30(raw, required="all")
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


def main() -> None:
    print("# components.schemas:")
    print(dump(components(), 4), end="")
    print("x-webhooks:")
    print(dump(webhooks(), 2), end="")


if __name__ == "__main__":
    main()
