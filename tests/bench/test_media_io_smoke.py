"""bench/media_io.py runs end to end at its tiniest size: files of each size taken in by the
real worker and served back, every byte (no speed is checked here)."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


def test_media_io_smoke() -> None:
    from bench import media_io

    res = media_io.run(quick=True)
    assert res.error is None
    for m in res.metrics:
        assert m.value is not None and math.isfinite(m.value) and m.value > 0, m.name
    for size in ("64 KiB", "1 MiB", "8 MiB"):
        info = res.extra[size]
        assert info["served_bytes"] > 0
