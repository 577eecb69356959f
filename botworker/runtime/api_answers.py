"""The bot API's answers: every error in the one shape of `wabot.api.ErrorResponse`, shared by
the routes of message_api.py and the others, so a client parses one kind of error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wabot.httpserver import Response

if TYPE_CHECKING:
    from pydantic import ValidationError

MAX_BODY = 64 * 1024
JSON = "application/json"


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    from wabot.api import ErrorResponse  # an API call, not idle: the models load on first use

    body = ErrorResponse(error=code, message=message, **extra)
    headers = {}
    if body.retry_after_seconds is not None:
        headers["Retry-After"] = str(body.retry_after_seconds)
    return Response(status, body.model_dump_json(by_alias=True, exclude_none=True).encode(),
                    JSON, headers)


def validation_error(exc: ValidationError, where: str = "body") -> Response:
    """422 naming the first offending field, as the API promises."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or where
    if first["type"] == "json_invalid":
        loc = where
    msg = first["msg"]
    return error(422, "invalid_request", f"{loc}: {msg}", field=loc)
