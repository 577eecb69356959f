"""bench/pipeline_kinds.py runs end to end at its tiniest size: every kind of message through
the real worker, text only and mixed, numbers positive and finite, nothing dropped. No speed
is checked here (`python -m bench --only pipeline` is where the ratio is read)."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


def test_pipeline_kinds_smoke() -> None:
    from bench import pipeline_kinds

    res = pipeline_kinds.run(n=400, repeats=1)
    assert res.error is None
    got = {m.name: m.value for m in res.metrics}
    for name in ("text only: messages/s (half commands)",
                 "every kind: messages/s (half commands)",
                 "every kind / text only, by CPU per message (median of pairs)"):
        value = got[name]
        assert value is not None and math.isfinite(value) and value > 0, name
    assert not any(res.extra["dropped"].values()), res.extra["dropped"]
