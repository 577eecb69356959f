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
from .openapi30 import dump, openapi30

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
            out[name] = openapi30(schema, closed=True)
        out[model.__name__] = openapi30(raw, closed=True)
    request = out["SendMessageRequest"]
    for kind in SEND_KINDS:  # exactly one kind, and not null (the model's _one_kind)
        request["properties"][kind].pop("nullable", None)
    request["oneOf"] = [{"required": [kind]} for kind in SEND_KINDS]
    return dict(sorted(out.items()))


def main() -> None:
    print("# components.schemas:")
    print(dump(components(), 4), end="")


if __name__ == "__main__":
    main()
