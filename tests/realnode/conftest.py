"""The real node's tests (devcluster/node.py): a kubelet with containerd beside kwok, where the
worker image really runs as a bot's pod. Their session fixtures (`real_node`, `worker_image`)
and the placement a bot asks for are tests/realnode/plugin.py's, shared with the chaos test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The operator fixtures (cluster, operator_factory and their failure report) are the operator
# suite's own.
from tests.operator.conftest import (  # noqa: F401
    cluster,
    operator_factory,
    pytest_runtest_makereport,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.realnode)
            item.add_marker(pytest.mark.cluster)
