"""Turning a chat message into a command: prefix, name, arguments. Pure and total.

Everything a stranger can type arrives here, so the parser must never raise and never do work
proportional to a hostile input's size beyond one bounded pass: the length limit is checked on
the raw text before normalisation, unbalanced quotes close at the end of the text instead of
failing (shlex raises on them), and text that arrives as bytes (protobuf hands invalid UTF-8
over as `bytes`) or with lone surrogates is repaired, never rejected with an exception.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_ARGS = 32
_NAME_RE = re.compile(r"^[\w-]{1,32}$")
# Invisible characters that can make two commands look identical or reorder text on screen.
_INVISIBLE = dict.fromkeys(
    [*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF, 0x00AD]
)


@dataclass(frozen=True)
class NotACommand:
    pass


@dataclass(frozen=True)
class TooLong:
    length: int
    limit: int


@dataclass(frozen=True)
class ParsedCommand:
    name: str
    args: tuple[str, ...]
    raw_args: str
    truncated_args: bool = False


ParseResult = NotACommand | TooLong | ParsedCommand


def to_text(raw: str | bytes) -> str:
    """A valid Unicode string whatever arrived: invalid UTF-8 and lone surrogates become
    U+FFFD instead of an exception further down (logging, JSON, the database)."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if raw.isascii():  # no surrogate in it: a flag of the string, no pass over it, no copy
        return raw
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in raw)
    return raw


def clean(text: str) -> str:
    """NFC-normalised text without control or invisible formatting characters.

    Tabs and newlines become spaces (they separate arguments); other C0/C1 controls and
    zero-width/bidi overrides are dropped. ASCII text (most of it) takes one translate() with
    the same result (NFC leaves ASCII as it is, and each character is kept, dropped or made a
    space on its own); the rest goes character by character.
    """
    if text.isascii():
        return text.translate(_ASCII_CLEAN)
    return _clean_any(text)


def _clean_any(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    out = []
    for ch in text:
        if ch in "\t\n\r\v\f":
            out.append(" ")
        elif unicodedata.category(ch) == "Cc":
            continue
        else:
            out.append(ch)
    return "".join(out)


# What _clean_any does to each ASCII character it changes (tests/worker/unit/test_parser.py
# compares the two on every ASCII character).
_ASCII_CLEAN = {cp: _clean_any(chr(cp)) or None for cp in range(128)
                if _clean_any(chr(cp)) != chr(cp)}


def split_args(text: str, max_args: int = MAX_ARGS) -> tuple[tuple[str, ...], bool]:
    """shlex-like splitting that never raises.

    Whitespace separates; '...' and "..." group (an unbalanced quote runs to the end of the
    text); a backslash outside single quotes escapes the next character. Returns the arguments
    (at most `max_args`) and whether more were present.
    """
    args: list[str] = []
    buf: list[str] = []
    in_token = False
    quote: str | None = None
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"' and i + 1 < n and text[i + 1] in '"\\':
                i += 1
                buf.append(text[i])
            else:
                buf.append(ch)
        elif ch.isspace():
            if in_token:
                if len(args) == max_args:
                    return tuple(args), True
                args.append("".join(buf))
                buf = []
                in_token = False
        elif ch in "'\"":
            quote = ch
            in_token = True
        elif ch == "\\" and i + 1 < n:
            i += 1
            buf.append(text[i])
            in_token = True
        else:
            buf.append(ch)
            in_token = True
        i += 1
    if in_token:
        if len(args) == max_args:
            return tuple(args), True
        args.append("".join(buf))
    return tuple(args), False


def parse(
    raw: str | bytes, prefix: str, max_length: int, max_args: int = MAX_ARGS
) -> ParseResult:
    """Parse one message. Only text starting with `prefix` followed directly by a valid
    command name is a command; the name is case-insensitive."""
    if len(raw) > max_length * 4:
        # Far beyond the limit whatever the encoding: refuse before touching the contents.
        return TooLong(len(raw), max_length) if _starts_with(raw, prefix) else NotACommand()
    text = clean(to_text(raw)).strip()
    if not text.startswith(prefix):
        return NotACommand()
    if len(text) > max_length:
        return TooLong(len(text), max_length)
    body = text[len(prefix) :]
    head, _, rest = body.partition(" ")
    name = head.casefold()
    if not _NAME_RE.match(name):
        return NotACommand()
    raw_args = rest.strip()
    args, truncated = split_args(raw_args, max_args)
    return ParsedCommand(name=name, args=args, raw_args=raw_args, truncated_args=truncated)


def _starts_with(raw: str | bytes, prefix: str) -> bool:
    head = raw[: len(prefix) + 64]
    return clean(to_text(head)).lstrip().startswith(prefix)
