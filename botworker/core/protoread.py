"""Reading protobuf messages a stranger wrote, without ever raising: a field that is absent,
of another type, or a string with invalid UTF-8 becomes a neutral value. Pure; used by
core/inbound.py on neonize's waE2E messages (attribute access only: no neonize import).
"""

from __future__ import annotations

from typing import Any

from .parser import to_text


def jid_string(jid: Any) -> str | None:
    """A JID protobuf as "user@server", without the device part (the identity, not the
    phone or laptop it wrote from); None when empty."""
    try:
        user, server = to_text(jid.User), to_text(jid.Server)
    except (AttributeError, TypeError):
        return None
    if not server:
        return None
    return f"{user}@{server}" if user else server


def has(body: Any, name: str) -> bool:
    try:
        return bool(body.HasField(name))
    except (AttributeError, ValueError, TypeError):
        return False


def fields(message: Any) -> list[tuple[str, Any]]:
    """(name, value) of the fields set on a protobuf message, in field-number order: one
    ListFields for both what is set and its values (the classification reads each message's
    fields once)."""
    try:
        return [(fd.name, value) for fd, value in message.ListFields()]
    except (AttributeError, TypeError):
        return []


def get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a protobuf that may be absent (None) or of an unexpected type."""
    if obj is None:
        return default
    try:
        return getattr(obj, name)
    except (AttributeError, TypeError, ValueError):
        return default


def text(value: Any) -> str:
    if isinstance(value, str | bytes):
        return to_text(value)
    return ""


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def optional_int(body: Any, name: str) -> int | None:
    """An optional integer field: None when the sender did not set it (not 0)."""
    try:
        if not body.HasField(name):
            return None
    except (AttributeError, ValueError, TypeError):
        return None
    return integer(get(body, name))


def number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # NaN and infinity are no place (and pydantic wrote them as null, not a number)
        return float(value) if value - value == 0 else 0.0
    return 0.0
