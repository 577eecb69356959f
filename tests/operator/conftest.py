"""Fixtures for the operator against a real control plane (`kube` and `namespace` come from
tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from wabot.spec import API_GROUP, API_VERSION, PLURAL


@pytest.fixture
def cluster(kube: Kube, namespace: str) -> Iterator[Cluster]:
    api_client = kube.api_client()
    assert isinstance(api_client, client.ApiClient)
    yield Cluster(api_client, namespace)
    api_client.close()


@pytest.fixture
def operator_factory(kube: Kube, cluster: Cluster, tmp_path: Path,
                     request: pytest.FixtureRequest) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators for the test namespace; at the end, delete the bots while an operator
    still runs (so their finalizers are honoured), then stop every operator. Without this the
    namespace could not be deleted: the bots' finalizers would wait for an operator forever."""
    started: list[OperatorProcess] = []

    def make(**kw: Any) -> OperatorProcess:
        settings: dict[str, Any] = {
            "namespace": cluster.ns, "kubeconfig": kube.kubeconfig,
            "log_path": tmp_path / f"operator-{len(started)}.log", **kw}
        op = OperatorProcess(**settings)
        started.append(op)
        return op

    yield make

    report = request.node.stash.get(_failed_key, False)
    alive = [op for op in started if op.proc is not None and op.proc.poll() is None]
    if not alive:
        alive = [make().start()]
    bots = cluster.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, cluster.ns,
                                                        PLURAL)["items"]
    for bot in bots:
        with contextlib.suppress(ApiException):
            cluster.delete_bot(bot["metadata"]["name"])
    with contextlib.suppress(AssertionError):
        eventually(lambda: not cluster.custom.list_namespaced_custom_object(
            API_GROUP, API_VERSION, cluster.ns, PLURAL)["items"], timeout=30,
            what="bots deleted")
    for op in started:
        op.stop()
    for bot in cluster.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, cluster.ns,
                                                            PLURAL)["items"]:
        with contextlib.suppress(ApiException):
            cluster.custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, cluster.ns, PLURAL, bot["metadata"]["name"],
                {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json")
    for pod in cluster.core.list_namespaced_pod(cluster.ns).items:
        if pod.metadata.finalizers:  # a test's hold on a terminating pod
            with contextlib.suppress(ApiException):
                cluster.core.patch_namespaced_pod(pod.metadata.name, cluster.ns,
                                                  {"metadata": {"finalizers": None}})
    if report:
        for op in started:
            print(f"--- {op.log_path.name} ---\n{op.log()}")


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_factory().start()


_failed_key = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    if rep.when == "call" and rep.failed:  # type: ignore[attr-defined]
        item.stash[_failed_key] = True
    return rep
