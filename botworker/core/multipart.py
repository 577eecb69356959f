"""multipart/form-data for the send API's uploads: a `message` part (the JSON request) and a
`file` part (the media's bytes), parsed strictly and without copies of the file.

The body arrives whole (the HTTP kit reads at most the route's limit), so parsing is a search
for the boundary in bytes; the file part is sliced out once, through a memoryview released
before `parse` returns (the send route then empties the body's buffer: runtime/send_request).
The standard library's email package reads each part's few header lines
(Content-Disposition's name and filename, with RFC 2231 encodings, and Content-Type); it never
sees the file itself, whose bytes it would decode to text and copy several times over.
Anything unexpected is a `MultipartError` naming the part: another part, a part twice, a
header block above 8 KiB, a body without its closing boundary (a truncated upload).
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass

from .outgoing import InvalidContent

MAX_HEADER_BLOCK = 8 * 1024
MAX_MESSAGE_PART = 64 * 1024
PARTS = ("message", "file")
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


class MultipartError(InvalidContent):
    """An upload that cannot be read as the send API's parts: a 422 naming the part."""


@dataclass(frozen=True)
class Part:
    data: bytes
    content_type: str | None = None
    filename: str | None = None


def boundary_of(content_type: str) -> str | None:
    """The boundary of a multipart/form-data Content-Type, or None when it is not one."""
    headers = email.parser.Parser(policy=email.policy.HTTP).parsestr(
        f"Content-Type: {content_type}\r\n\r\n", headersonly=True)
    if headers.get_content_type() != "multipart/form-data":
        return None
    boundary = headers.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY.match(boundary):
        raise MultipartError("Content-Type", "multipart/form-data needs a valid boundary "
                             "(1-70 characters, RFC 2046)")
    return boundary


def parse(body: bytes | bytearray, boundary: str) -> dict[str, Part]:
    """The named parts of `body` (bytes or a bytearray); only the names in PARTS, each at
    most once."""
    with memoryview(body) as view:
        return _parse(body, view, boundary)


def _parse(body: bytes | bytearray, view: memoryview, boundary: str) -> dict[str, Part]:
    delimiter = b"--" + boundary.encode("ascii")
    start = body.find(delimiter)
    if start < 0 or body[:start].strip():
        raise MultipartError("body", "not a multipart body with the declared boundary")
    parts: dict[str, Part] = {}
    pos = start + len(delimiter)
    while True:
        if body.startswith(b"--", pos):
            return parts  # the closing delimiter; what follows is the epilogue
        if not body.startswith(b"\r\n", pos):
            raise MultipartError("body", "a malformed boundary line")
        pos += 2
        header_end = body.find(b"\r\n\r\n", pos, pos + MAX_HEADER_BLOCK + 4)
        if header_end < 0:
            raise MultipartError("body", "a part's headers are missing, cut off or over "
                                 f"{MAX_HEADER_BLOCK} bytes")
        name, part_type, filename = _part_headers(bytes(view[pos:header_end + 2]))
        data_start = header_end + 4
        data_end = body.find(b"\r\n" + delimiter, data_start)
        if data_end < 0:
            raise MultipartError(name, "the body ends inside this part: the upload is "
                                 "truncated (no closing boundary)")
        if name in parts:
            raise MultipartError(name, "this part is given twice")
        if name == "message" and data_end - data_start > MAX_MESSAGE_PART:
            raise MultipartError("message", f"at most {MAX_MESSAGE_PART} bytes")
        parts[name] = Part(bytes(view[data_start:data_end]), part_type, filename)
        pos = data_end + 2 + len(delimiter)


def _part_headers(block: bytes) -> tuple[str, str | None, str | None]:
    """(name, Content-Type, filename) of one part."""
    try:
        headers = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            block + b"\r\n", headersonly=True)
    except Exception:
        raise MultipartError("body", "a part's headers cannot be read") from None
    if headers.get_content_disposition() != "form-data":
        raise MultipartError("body", "each part needs Content-Disposition: form-data")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str) or name not in PARTS:
        raise MultipartError("body", f"unknown part {str(name)[:40]!r}: send the parts "
                             f"{' and '.join(PARTS)}")
    filename = headers.get_filename()
    part_type = headers.get_content_type() if headers.get("content-type") else None
    return name, part_type, filename
