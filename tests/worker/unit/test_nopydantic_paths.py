"""What the worker keeps beside the pydantic contract so that an idle bot, and one answering
text and database commands, never loads pydantic (bench/PROFILE-density.md, "pydantic out of
the worker"): each copy is checked against the contract's own value here."""

from __future__ import annotations

from botworker.runtime import incoming
from wabot.events import MEDIA_TYPES


def test_the_media_kinds_are_the_event_models_media_types() -> None:
    assert incoming.MEDIA_TYPES == MEDIA_TYPES
