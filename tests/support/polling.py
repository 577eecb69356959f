"""Waiting for a condition with a deadline: tests never sleep a fixed time and then assert."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.2,
               what: str = "condition", explain: Callable[[], str] | None = None, *,
               retry_on: tuple[type[BaseException], ...] = (),
               error: type[Exception] = AssertionError) -> T:
    """Poll until `check()` returns something truthy and return it. An exception in `retry_on`
    counts as a falsy answer (an API server still starting, say). At the deadline raise `error`
    with `what`, the last value seen and, with `explain`, the state that tells why (read at the
    moment of failure)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise error(f"{what} not met within {timeout}s (last: {last!r}){_detail(explain)}")
        time.sleep(interval)


def _detail(explain: Callable[[], str] | None) -> str:
    if explain is None:
        return ""
    try:
        return "\n" + explain()
    except Exception as exc:  # the explanation must not hide the failure
        return f"\n(explaining failed: {exc!r})"
