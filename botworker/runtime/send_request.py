"""A send request as it arrives at the worker: JSON, or multipart with the file, read into the
shared model (`wabot.api.SendMessageRequest`) and, for an upload, the file's part.

A JSON body keeps the API's old limit (64 KiB); only a multipart body may be as large as the
largest file a kind takes (the route's limit), and its `message` part is the same JSON,
validated with the upload in mind (a media kind then takes no `url`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wabot.httpserver import Request, Response

from ..core import multipart
from .api_answers import MAX_BODY, error, validation_error

if TYPE_CHECKING:  # pydantic: loaded by the first send request, not by an idle worker
    from wabot.api import SendMessageRequest


@dataclass(frozen=True)
class SendRequest:
    message: SendMessageRequest
    upload: multipart.Part | None = None

    def fingerprint(self) -> str:
        """The request's identity for Idempotency-Key: the message and the file's bytes."""
        digest = hashlib.sha256(self.upload.data).hexdigest() if self.upload else ""
        return self.message.fingerprint(digest)


def read(req: Request) -> SendRequest | Response:
    """The request, or the 4xx answer naming what is wrong with it."""
    content_type = req.headers.get("content-type") or "application/json"
    try:
        boundary = multipart.boundary_of(content_type)
    except multipart.MultipartError as exc:
        return error(422, "invalid_request", f"{exc.field}: {exc}", field=exc.field)
    body = req.buffer if req.buffer is not None else req.body
    if boundary is None:
        if len(body) > MAX_BODY:
            return error(413, "body_too_large", f"a JSON request has at most {MAX_BODY} "
                         "bytes; send files as a multipart upload (parts message and file)")
        return _validated(body, upload=False)
    try:
        parts = multipart.parse(body, boundary)
    except multipart.MultipartError as exc:
        return error(422, "invalid_request", f"{exc.field}: {exc}", field=exc.field)
    _release(body)
    if "message" not in parts:
        return error(422, "invalid_request", "message: the multipart part `message` (the "
                     "JSON request) is missing", field="message")
    file = parts.get("file")
    parsed = _validated(parts["message"].data, upload=file is not None)
    if isinstance(parsed, Response):
        return parsed
    return SendRequest(parsed.message, file)


def _release(body: bytes | bytearray) -> None:
    """Empty the request's buffer once the parts are out of it: the send route takes its body
    over (message_api.py, `takes_body`), so the file is held once, not twice, while neonize
    and whatsmeow copy and encrypt it (bench/upload_peak.py)."""
    if isinstance(body, bytearray):
        del body[:]


def _validated(body: bytes | bytearray, *, upload: bool) -> SendRequest | Response:
    from pydantic import ValidationError

    from wabot.api import SendMessageRequest

    try:
        return SendRequest(SendMessageRequest.model_validate_json(
            body, context={"upload": upload}))
    except ValidationError as exc:
        return validation_error(exc)
