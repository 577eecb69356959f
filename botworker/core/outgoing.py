"""One outgoing message of any kind, as the API, plugins and custom commands describe it, and
WhatsApp's limits on media, checked before anything is sent.

Pure: the content is the send API's own models (`wabot.api`), so a plugin's
`ctx.reply_image(...)`, a custom command's image and `POST .../messages` are one thing; the
bytes are sniffed here (the declared type is never trusted) with a small table of magic
numbers, so this module loads no media library. Building the WhatsApp message from it is the
runtime's job (runtime/outgoing.py, with neonize's own builders).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from .recent import Known

if TYPE_CHECKING:  # the models are only read here; a bot answering text never loads pydantic
    from wabot.api import Contact, Delete, Edit, Location, Media, Poll, Reaction

MiB = 1024 * 1024
KiB = 1024

Content: TypeAlias = "str | Media | Location | Contact | Poll | Reaction | Edit | Delete"


@dataclass(frozen=True)
class MediaRule:
    max_bytes: int
    types: tuple[str, ...]  # what the bytes may be; () for any (documents)
    what: str  # for the error message


# WhatsApp's documented limits (Cloud API media reference: image 5 MB, video and audio 16 MB,
# document 100 MB, sticker webp 100 KB static / 500 KB animated), in MiB/KiB. Documents are
# held whole in the worker's memory several times over while they are uploaded, so a pod's
# default is 32 MiB, not 100 (MediaLimits(document=...) raises it).
DEFAULT_RULES: dict[str, MediaRule] = {
    "image": MediaRule(5 * MiB, ("image/jpeg", "image/png"), "a JPEG or PNG image"),
    "video": MediaRule(16 * MiB, ("video/mp4", "video/3gpp"), "an MP4 or 3GPP video"),
    "audio": MediaRule(16 * MiB, ("audio/mpeg", "audio/mp4", "audio/aac", "audio/ogg",
                                  "audio/amr"), "MP3, M4A, AAC, Ogg or AMR audio"),
    "voice": MediaRule(16 * MiB, ("audio/mpeg", "audio/mp4", "audio/aac", "audio/ogg",
                                  "audio/amr"), "audio (made Ogg Opus unless it is)"),
    "document": MediaRule(32 * MiB, (), "a file"),
    "sticker": MediaRule(500 * KiB, ("image/webp", "image/png", "image/jpeg"),
                         "a WebP sticker (PNG and JPEG are converted to one)"),
}


class InvalidContent(ValueError):
    """Content WhatsApp would refuse, or that cannot be processed: a 422 naming `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Outgoing:
    """One message to send. `target` is the earlier message a reaction, edit or delete acts
    on; `quote` the one a reply quotes (both resolved by the caller); `data` the media's bytes
    once fetched and checked, `mimetype` what they are."""

    kind: str
    content: Content
    data: bytes | None = None
    mimetype: str | None = None
    file_name: str | None = None
    mentions: tuple[str, ...] = ()
    target: Known | None = None
    quote: Known | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def media(self) -> Media | None:
        """The content of a media kind (image, video, ..., always a wabot.api Media)."""
        return cast("Media", self.content) if self.kind in DEFAULT_RULES else None

    def with_file(self, data: bytes, mimetype: str, file_name: str | None = None) -> Outgoing:
        return replace(self, data=data, mimetype=mimetype, file_name=file_name)


# Files known by their first bytes. No two of a table share a first byte, so a table's order
# does not matter; the ftyp box (MP4, 3GP, M4A, QuickTime) is read between the two tables, in
# the order sniff always read them.
_MAGIC_BEFORE_FTYP = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
                      (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
_MAGIC_AFTER_FTYP = ((b"OggS", "audio/ogg"), (b"#!AMR", "audio/amr"), (b"ID3", "audio/mpeg"),
                     (b"%PDF-", "application/pdf"), (b"PK\x03\x04", "application/zip"),
                     (b"\x1a\x45\xdf\xa3", "video/webm"))


def _magic(head: bytes, table: tuple[tuple[bytes, str], ...]) -> str | None:
    return next((kind for prefix, kind in table if head.startswith(prefix)), None)


def sniff(data: bytes) -> str | None:
    """What the bytes are, by their first bytes (the formats WhatsApp takes, and a few common
    ones so a refusal can say what was sent instead); None when unknown."""
    head = data[:64]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    known = _magic(head, _MAGIC_BEFORE_FTYP)
    if known is not None:
        return known
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"3g"):
            return "video/3gpp"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand in (b"qt  ",):
            return "video/quicktime"
        return "video/mp4"
    known = _magic(head, _MAGIC_AFTER_FTYP)
    if known is not None:
        return known
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # a frame sync
        return "audio/aac" if (head[1] >> 1) & 3 == 0 else "audio/mpeg"  # layer: ADTS or MP3
    return None


def is_opus(data: bytes) -> bool:
    """An Ogg stream whose first packet is Opus's header (what WhatsApp plays as a voice
    note)."""
    return data.startswith(b"OggS") and b"OpusHead" in data[:128]


def check_media(kind: str, field_name: str, data: bytes, declared: str | None,
                rules: dict[str, MediaRule] = DEFAULT_RULES) -> str:
    """The media's type, checked against WhatsApp's rules for `kind`; InvalidContent naming
    `field_name` otherwise. The bytes decide: a declared type they contradict is refused."""
    rule = rules[kind]
    if declared is not None:
        declared = declared.split(";")[0].strip().lower()
        if declared in ("application/octet-stream", ""):
            declared = None  # what a client says when it does not know
    if not data:
        raise InvalidContent(field_name, "the file is empty")
    if len(data) > rule.max_bytes:
        raise InvalidContent(field_name, f"the file has {len(data)} bytes; a {kind} may have "
                             f"at most {rule.max_bytes} ({_size(rule.max_bytes)})")
    actual = sniff(data)
    if not rule.types:  # a document: any file, its type as declared or as read
        return declared or actual or "application/octet-stream"
    if actual not in rule.types:
        raise InvalidContent(field_name, f"the file is {actual or 'of an unknown type'}; a "
                             f"{kind} must be {rule.what}")
    if declared is not None and declared != actual:
        raise InvalidContent(field_name, f"declared as {declared} but the file is {actual}")
    return actual


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"
