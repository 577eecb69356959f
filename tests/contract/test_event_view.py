"""The webhook body the worker writes without pydantic (wabot/event_view.py's data, written by
botworker/core/webhook_body.payload_body) is byte for byte what wabot.events.WebhookPayload
writes for the same values (model_dump_json(by_alias=True)), for every event kind, and what a
receiver validating against the documented models reads.

Each event's data is filled from its generated field table (every field set, or only the
required ones), and the message kinds are also built the worker's way, from neonize's own
protobufs (tests/support/wamessages.py) through botworker.core.inbound.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from botworker.core import inbound
from botworker.core.inbound import Envelope, Incoming
from botworker.core.webhook_body import payload_body
from tests.support import wamessages as wa
from wabot import event_view, events
from wabot.specread import dump, read

AT = datetime(2026, 12, 7, 13, 9, 41, 123456, tzinfo=UTC)
TEXT = 'Grüße "quoted" \\ back\nslash \x00\x1f\u2028 😀 </script>'
ENV = Envelope(chat="15550001111@s.whatsapp.net", sender="15550001111@s.whatsapp.net",
               push_name="Ann", message_id="M1", is_group=False, timestamp_ms=1_700_000_000_000,
               sender_phone="15550001111@s.whatsapp.net", sender_lid="99@lid")


def _value(shape: Any, full: bool) -> Any:
    """A value of one field's shape (a generated table's); `full`: optional parts set too."""
    if isinstance(shape, type):
        return _data(shape, full)
    if shape == "any":
        return {"requestId": "r1", "at": "2026-12-07T13:09:41Z", "n": [1, 2.5, None, True]}
    simple = {"str": TEXT, "int": 7, "bool": True, "float": 52.520008, "datetime": AT}
    if isinstance(shape, str):
        return simple[shape]
    tag, inner = shape[0], shape[1]
    if tag == "opt":
        return _value(inner, full) if full else None
    if tag == "lit":
        return inner[-1]
    if tag == "list":
        return [_value(inner, full), _value(inner, full)]
    if tag == "dict":
        return {"k": _value(inner, full)}
    if tag == "chk":
        return _value(inner, full)
    raise AssertionError(shape)


def _data(cls: type, full: bool) -> Any:
    kwargs = {attr: _value(shape, full) for attr, _, shape, required in event_view.SHAPES[cls]
              if required or full}
    return cls(**kwargs)


def _pydantic_body(delivery_id: str, event: str, view: Any, created_at: datetime) -> bytes:
    """What the worker wrote with pydantic before: the model built from the same values."""
    model = events.EVENT_DATA[event].model_validate(dump(view))
    payload = events.WebhookPayload.model_validate({
        "id": delivery_id, "event": event, "bot": "bot-1", "serverName": "acme",
        "createdAt": created_at, "data": model})
    return payload.model_dump_json(by_alias=True).encode()


def _same(event: str, view: Any, created_at: datetime = AT, *, receiver: bool = True) -> bytes:
    body = payload_body("d1", event, view, bot="bot-1", server_name="acme",
                        created_at=created_at)
    assert body == _pydantic_body("d1", event, view, created_at)
    if not receiver:
        return body
    parsed = events.WebhookPayload.model_validate_json(body)  # what a receiver reads
    assert parsed.event == event and parsed.version == 2
    return body


@pytest.mark.parametrize("event", list(events.EVENT_DATA))
@pytest.mark.parametrize("full", [True, False], ids=["every-field", "required-only"])
def test_every_event_writes_the_models_bytes(event: str, full: bool) -> None:
    view = _data(event_view.EVENT_DATA[event], full)
    body = _same(event, view)
    # The view reads back from its own JSON (the generated table is the model's; read()
    # gives tuples for lists, the builders lists: compared as JSON).
    data = json.loads(body)["data"]
    assert dump(read(event_view.EVENT_DATA[event], data, "data")) == data


def test_the_views_are_the_models_fields_and_defaults() -> None:
    assert list(event_view.EVENT_DATA) == list(events.EVENT_DATA)
    for event, model in events.EVENT_DATA.items():
        view = event_view.EVENT_DATA[event]
        assert view.__name__ == model.__name__
        names = [(attr, alias) for attr, alias, _, _ in event_view.SHAPES[view]]
        assert names == [(n, f.alias or n) for n, f in model.model_fields.items()]
    assert event_view.SCHEMA_VERSION == events.SCHEMA_VERSION


@pytest.mark.parametrize("created_at", [
    AT, AT.replace(microsecond=0), datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))])
def test_times_are_written_as_pydantic_writes_them(created_at: datetime) -> None:
    _same("call", event_view.CallData(call_id="c1", caller="1@s.whatsapp.net",
                                      timestamp=created_at), created_at)


@pytest.mark.parametrize("degrees", [0.0, -0.0, 1e-7, -1.5e-5, 1e-5, 1.234e-5, 1e-6, 9.99e-7,
                                     1e-10, 0.0001, 0.00015, 52.52, 0.1 + 0.2, 1e15, 1e16, 1e22,
                                     5e-324, 1.7976931348623157e308,
                                     float("inf"), float("-inf"), float("nan")])
def test_a_locations_numbers_are_written_as_pydantic_writes_them(degrees: float) -> None:
    loc = event_view.LocationData(latitude=degrees, longitude=-degrees, name=TEXT)
    # A text that looks like a number field is left alone.
    _same("message", event_view.MessageData(
        chat="c", sender="s", message_id="m", text='"latitude":1e-07,', type="location",
        location=loc), receiver=degrees - degrees == 0)  # null is no number: the reader's


def test_a_location_that_is_no_place_arrives_as_zero_degrees() -> None:
    """neonize hands over whatever the sender put in the double: infinity or NaN is read as 0
    (the documented schema has a number there, and a null would fail the receiver)."""
    out = inbound.classify(wa.location(float("inf"), float("nan")), ENV)
    assert isinstance(out, Incoming) and out.data.location is not None
    assert (out.data.location.latitude, out.data.location.longitude) == (0.0, 0.0)
    _same("message", out.data)


@pytest.mark.parametrize("build", [
    lambda c: wa.text("hello " + TEXT),
    lambda c: wa.extended("hi @2222", quoted_id="Q9", quoted_sender="15550002222@s.whatsapp.net",
                          mentions=("15550002222@s.whatsapp.net",), forwarded=True),
    lambda c: wa.media("image", b"\x89PNG" * 9, "image/png", caption="look", width=640,
                       height=480),
    lambda c: wa.media("document", b"%PDF-1.4", "application/pdf", caption="!ping",
                       file_name="r.pdf"),
    lambda c: wa.media("voice", b"OggS", "audio/ogg; codecs=opus", seconds=4),
    lambda c: wa.media("sticker", b"RIFF", "image/webp"),
    lambda c: wa.view_once(wa.media("video", b"x", "video/mp4")),
    lambda c: wa.location(52.520008, 13.404954, "Berlin"),
    lambda c: wa.location(1e-7, -0.00001, live=True),
    lambda c: wa.contact("Ann", "+15550001111"),
    lambda c: wa.contacts(("Ann", "+15550001111"), ("Bob", "+15550002222")),
    lambda c: wa.poll(c, "Lunch?", ["pizza", "sushi"], selectable=0),
    lambda c: wa.reaction(c, "15550001111", "15550001111", "M0", "👍"),
    lambda c: wa.edit("15550001111", "M0", "fixed typo"),
    lambda c: wa.revoke("15550001111", "15550001111", "M0", "15550001111"),
], ids=["text", "extended", "image", "document", "voice", "sticker", "view-once-video",
        "location", "live-location", "contact", "contacts", "poll", "reaction", "edit",
        "revoke"])
def test_messages_built_the_workers_way_write_the_models_bytes(build: Any,
                                                               neonize_client: Any) -> None:
    out = inbound.classify(build(neonize_client), ENV)
    data: Any
    if isinstance(out, Incoming):
        event, data = "message", out.data
    else:
        assert isinstance(out, event_view.ReactionData | event_view.EditedData
                          | event_view.RevokedData), out
        event, data = {"ReactionData": "message.reaction", "EditedData": "message.edited",
                       "RevokedData": "message.revoked"}[type(out).__name__], out
    _same(event, data)


def test_an_event_with_another_events_data_is_refused() -> None:
    with pytest.raises(ValueError, match="event command carries CallData"):
        payload_body("d1", "command", event_view.CallData(call_id="c", caller="x"), bot="b",
                     server_name="s", created_at=AT)


@pytest.fixture(scope="module")
def neonize_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """neonize's real client, never connected: only its message builders are used."""
    from neonize.client import NewClient

    return NewClient(str(tmp_path_factory.mktemp("neonize") / "session.sqlite3"))
