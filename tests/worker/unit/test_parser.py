"""The command parser: whatever a stranger types, it answers with a result, never an error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botworker.core.parser import (
    NotACommand,
    ParsedCommand,
    TooLong,
    _clean_any,
    clean,
    parse,
    split_args,
    to_text,
)


def cmd(text: str, prefix: str = "!", limit: int = 4096) -> ParsedCommand:
    result = parse(text, prefix, limit)
    assert isinstance(result, ParsedCommand), result
    return result


def test_name_and_arguments() -> None:
    c = cmd("!Ping   a  b")
    assert (c.name, c.args, c.raw_args) == ("ping", ("a", "b"), "a  b")


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ('!x "two words" three', ("two words", "three")),
        ("!x 'single quoted' \"double\"", ("single quoted", "double")),
        ('!x "unbalanced quote runs to the end', ("unbalanced quote runs to the end",)),
        ("!x it's", ("its",)),
        ('!x a\\ b "c\\"d"', ("a b", 'c"d')),
        ("!x ''", ("",)),
        ("!x '; DROP TABLE audit_entry; --", ("; DROP TABLE audit_entry; --",)),
        ("!x trailing\\", ("trailing\\",)),
    ],
)
def test_quoting(text: str, args: tuple[str, ...]) -> None:
    assert cmd(text).args == args


@pytest.mark.parametrize("text", ["hello", "", "   ", "!", "! ping", "!!!", "!" + "x" * 33,
                                  "!ping!", "?ping"])
def test_not_commands(text: str) -> None:
    assert parse(text, "!", 4096) == NotACommand()


def test_multi_character_prefix_and_leading_space() -> None:
    assert cmd("  ./help", prefix="./").name == "help"


def test_length_limit() -> None:
    assert parse("!x " + "a" * 100, "!", 50) == TooLong(103, 50)
    assert isinstance(parse("!x " + "a" * 10_000_000, "!", 50), TooLong)
    assert parse("a" * 10_000_000, "!", 50) == NotACommand()


def test_argument_count_limit() -> None:
    c = parse("!x " + " ".join(str(i) for i in range(100)), "!", 4096, max_args=5)
    assert isinstance(c, ParsedCommand)
    assert c.args == ("0", "1", "2", "3", "4") and c.truncated_args


def test_unicode_normalisation_and_controls() -> None:
    assert cmd("!e cafe\u0301").args == ("caf\u00e9",)
    assert cmd("!e a\u200bb\u202ec\x00d\x1b").args == ("abcd",)
    assert cmd("!e a\nb\tc").args == ("a", "b", "c")
    assert cmd("!\u00c9CHO x").name == "\u00e9cho"


def test_bytes_and_lone_surrogates_are_repaired() -> None:
    assert to_text(b"!e \xff\xfe") == "!e \ufffd\ufffd"
    assert to_text("!e \ud800x") == "!e \ufffdx"
    assert cmd(b"!e \xed\xa0\x80").args == ("\ufffd\ufffd\ufffd",)
    assert cmd("!e \udcff").args == ("\ufffd",)


def test_ascii_text_is_cleaned_as_any_other_text() -> None:
    """clean() takes a translate() for ASCII text: the same result as the character-by-character
    path, on every ASCII character alone and in company."""
    every = "".join(chr(cp) for cp in range(128))
    for text in [*every, every, "!ping", "!e a\tb\x00c\x7f d\x1c\r\n", ""]:
        assert clean(text) == _clean_any(text)
        assert to_text(text) is text  # ASCII cannot hold a surrogate: returned as it came


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_fast_path_matches_on_any_ascii_text(text: str) -> None:
    assert clean(text) == _clean_any(text)


@given(st.text(), st.sampled_from(["!", "#", "./", "\u00bf"]), st.integers(1, 5000))
def test_never_raises_on_any_text(text: str, prefix: str, limit: int) -> None:
    parse(text, prefix, limit)
    parse(prefix + text, prefix, limit)


@given(st.binary())
def test_never_raises_on_any_bytes(raw: bytes) -> None:
    parse(b"!x " + raw, "!", 4096)


@given(st.text())
def test_split_never_raises_and_respects_the_limit(text: str) -> None:
    args, truncated = split_args(text, 3)
    assert len(args) <= 3
    assert truncated or len(args) <= 3
