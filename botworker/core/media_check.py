"""Does a downloaded file match what its message declared? Pure.

The sender writes the declaration (size, SHA-256, mimetype) and the bytes: a file that is
larger, truncated, altered or of another kind than it says is refused before it reaches the
bot's volume or a tenant. whatsmeow checks the encrypted copy's hashes when it decrypts; these
checks hold whatever the download path was, and they also catch a sender whose declaration
lies about what the plaintext is (a "photo" that is a program).
"""

from __future__ import annotations

import hashlib

# Leading bytes of the formats WhatsApp carries, and the family each belongs to.
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    # (magic, offset, family, a mimetype for it)
    (b"\xff\xd8\xff", 0, "image", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image", "image/png"),
    (b"GIF87a", 0, "image", "image/gif"),
    (b"GIF89a", 0, "image", "image/gif"),
    (b"OggS", 0, "audio", "audio/ogg"),
    (b"ID3", 0, "audio", "audio/mpeg"),
    (b"#!AMR", 0, "audio", "audio/amr"),
    (b"%PDF-", 0, "document", "application/pdf"),
    (b"PK\x03\x04", 0, "archive", "application/zip"),
    (b"\x7fELF", 0, "executable", "application/x-executable"),
    (b"MZ", 0, "executable", "application/x-msdownload"),
)
# Declared families, by the mimetype's top level; documents may be anything but executables.
_ACCEPTS: dict[str, frozenset[str]] = {
    "image": frozenset({"image"}),
    "sticker": frozenset({"image"}),
    "video": frozenset({"video"}),
    "audio": frozenset({"audio", "video"}),  # m4a is an MP4 container
    "voice": frozenset({"audio"}),
}
# Message types whose bytes must be recognised as their family (a picture WhatsApp shows).
_MUST_RECOGNISE = frozenset({"image", "sticker"})


def sniff(data: bytes) -> tuple[str, str] | None:
    """(family, mimetype) of the leading bytes, None when unrecognised."""
    head = data[:64]
    for magic, offset, family, mime in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return family, mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio", "audio/mp4"
        return "video", "video/mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio", "audio/aac"  # ADTS
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio", "audio/mpeg"  # MPEG audio frame
    return None


def declared_family(mimetype: str | None) -> str | None:
    """The family a declared mimetype claims, when it claims one we can check."""
    mime = (mimetype or "").split(";", 1)[0].strip().lower()
    top = mime.split("/", 1)[0]
    if top in ("image", "video", "audio"):
        return top
    if mime == "application/pdf":
        return "document"
    if mime == "application/zip" or mime.startswith("application/vnd.openxmlformats"):
        return "archive"
    if mime in _EXECUTABLE_TYPES:
        return "executable"
    return None


_EXECUTABLE_TYPES = frozenset({"application/x-executable", "application/x-msdownload",
                               "application/vnd.microsoft.portable-executable",
                               "application/x-dosexec", "application/octet-stream"})


def refusal(data: bytes, *, message_type: str, mimetype: str | None, declared_size: int | None,
            declared_sha256: str | None, max_bytes: int) -> str | None:
    """Why the file is refused (a short machine-readable reason), or None to keep it."""
    if len(data) > max_bytes:
        return "too_large"
    if declared_size is not None and len(data) != declared_size:
        return "truncated" if len(data) < declared_size else "size_mismatch"
    if declared_sha256 and hashlib.sha256(data).hexdigest() != declared_sha256.lower():
        return "sha256_mismatch"
    found = sniff(data)
    claimed = declared_family(mimetype)
    accepts = _ACCEPTS.get(message_type)
    if accepts is not None and found is None and message_type in _MUST_RECOGNISE:
        return "type_mismatch"
    if found is None:
        return None
    if accepts is not None and found[0] not in accepts:
        return "type_mismatch"  # a "photo" that is a PDF, a "voice note" that is a program
    if claimed is not None and not _compatible(claimed, found[0]):
        return "type_mismatch"  # a document declared as PDF that is a program
    if found[0] == "executable" and claimed != "executable":
        return "type_mismatch"
    return None


def _compatible(claimed: str, found: str) -> bool:
    if claimed == "executable":
        return True  # octet-stream and friends claim nothing about the content
    if {claimed, found} <= {"audio", "video"}:
        return True  # MP4/M4A containers, video/ogg
    return claimed == found
