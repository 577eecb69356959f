"""A webhook delivery's JSON body, written without pydantic: the event's data is a class of
wabot/event_view.py (generated from wabot/events.py), and the bytes are those
wabot.events.WebhookPayload's model_dump_json(by_alias=True) writes for the same values
(tests/contract/test_event_view.py). The classes load with the first event: an idle bot does
not carry them (0.45 MiB). Pure; adapters/webhooks.py queues and posts what this writes.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from wabot.specread import dump, json_bytes


@functools.cache
def _float_keys() -> tuple[str, ...]:
    """The events' number fields (a location's degrees), written as pydantic writes numbers."""
    from wabot import event_view

    return tuple(sorted({alias for shapes in event_view.SHAPES.values()
                         for _, alias, shape, _ in shapes
                         if shape in ("float", ("opt", "float"))}))


def payload_body(delivery_id: str, event: str, data: Any, *, bot: str, server_name: str,
                 created_at: datetime) -> bytes:
    """One delivery's body: WebhookPayload's fields, in its order; `data` must be the event's
    own class (a ValueError otherwise, as the model's validator refused it)."""
    from wabot import event_view

    want = event_view.EVENT_DATA.get(event)
    if want is None or type(data).__name__ != want.__name__:
        raise ValueError(f"event {event} carries {type(data).__name__}")
    return json_bytes({"id": delivery_id, "version": event_view.SCHEMA_VERSION, "event": event,
                       "bot": bot, "serverName": server_name,
                       "createdAt": created_at.isoformat().replace("+00:00", "Z"),
                       "data": dump(data)}, _float_keys())
