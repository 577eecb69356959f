"""The benchmark's own client must not load the API server with work the operator's run does
not have (the raw baseline's creates go through the operator's Kube, which reads answers)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from bench.kube import BenchCluster
from tests.conftest import Kube

pytestmark = pytest.mark.cluster


def _connections_made(api: Any) -> int:
    """Connections urllib3 has opened to the API server (its pool for that host counts them)."""
    pool = api.rest_client.pool_manager.connection_from_url(api.configuration.host)
    return int(pool.num_connections)


def test_bot_creates_reuse_one_connection(kube: Kube, namespace: str) -> None:
    bench = BenchCluster(nodes=1)  # not started: its client is pointed at the test cluster
    try:
        bench.api = kube.api_client()
        for i in range(8):
            bench.create_bot(namespace, f"conn-{i}")
        # One after another: one connection. An answer left unread kept its connection out
        # of the pool, and each create opened (and TLS-handshook) a new one: 8 here.
        assert _connections_made(bench.api) == 1
        listed = kube.kubectl("-n", namespace, "get", "whatsappbots", "-o", "name").stdout
        assert len(listed.split()) == 8
    finally:
        bench.api.close()
        shutil.rmtree(bench.root, ignore_errors=True)
