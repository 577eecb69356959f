"""The reliability suite's fixtures. Its figures (printed at the end of every session that
recorded any, written to FIGURES.md at full size) are a plugin of the whole test tree,
tests/reliability/plugin.py, since tests/security records its rows there too.

The `cluster` and `operator_factory` fixtures are the operator tests' own (an operator as a
real `python -m wabot_operator` process per test namespace, bots deleted while it still runs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.operator.conftest import cluster, operator_factory  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _quiet_retries() -> Iterator[None]:
    """urllib3 warns on every retried connection while the API server or PostgreSQL is down
    on purpose: thousands of lines that would bury a real failure's report."""
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
