"""Fixtures for the attacks of issue 21, made as the least-privileged user a self-service
install has: a tenant's team member who may write WhatsAppBots in one namespace and read its
pods and their logs, and nothing else. Requests are really made as that user (impersonation:
the API server's RBAC and admission decide, not the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import Kube
from tests.operator.conftest import (  # noqa: F401  (fixtures and the failure-report hook)
    cluster,
    operator_factory,
    pytest_runtest_makereport,
)
from tests.operator.helpers import Cluster, OperatorProcess
from tests.packaging.conftest import (  # noqa: F401  (fixtures)
    make_namespace,
    release,
    token_kubeconfig,
)
from wabot.spec import API_GROUP, API_VERSION, PLURAL

TENANT_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": [PLURAL],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods", "pods/log", "events"],
     "verbs": ["get", "list", "watch"]},
]


@dataclass
class TenantUser:
    """One person of one tenant, acting through the real API server as `user`."""

    user: str
    ns: str
    kube: Kube
    api_client: client.ApiClient

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def create_bot(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "WhatsAppBot",
                "metadata": {"name": name}, "spec": spec}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, self.ns, PLURAL, body)
        return result

    def can_i(self, *args: str) -> bool:
        """`kubectl auth can-i ... --as USER` in the tenant's namespace."""
        out = self.kube.kubectl("auth", "can-i", *args, "-n", self.ns, "--as", self.user,
                                check=False)
        return out.stdout.strip() == "yes"


@pytest.fixture
def tenant_user(kube: Kube, cluster: Cluster) -> Iterator[TenantUser]:  # noqa: F811
    """`alice`, bound only to TENANT_RULES in the test namespace."""
    name = "wabot-tenant"
    cluster.rbac.create_namespaced_role(cluster.ns, {
        "metadata": {"name": name}, "rules": TENANT_RULES})
    cluster.rbac.create_namespaced_role_binding(cluster.ns, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "alice"}]})
    api = kube.api_client()
    assert isinstance(api, client.ApiClient)
    api.set_default_header("Impersonate-User", "alice")
    yield TenantUser("alice", cluster.ns, kube, api)
    api.close()


@pytest.fixture
def hosts(kube: Kube, cluster: Cluster) -> Callable[[str], None]:  # noqa: F811
    """Set the test namespace's wabot.io/tenants annotation, as its admin would."""
    def annotate(tenants: str) -> None:
        kube.kubectl("annotate", "--overwrite", "namespace", cluster.ns,
                     f"wabot.io/tenants={tenants}")
    return annotate


@pytest.fixture(params=["admin", "default-chart"])
def operator_rights(request: pytest.FixtureRequest, kube: Kube, cluster: Cluster,  # noqa: F811
                    make_namespace: Callable[[], str],  # noqa: F811
                    release: Callable[..., str],  # noqa: F811
                    tmp_path: Path) -> Path:
    """The kubeconfig the operator under test runs with: the admin's, and the rights a
    default `helm install` gives it (watching the test namespace), so every attack is also
    tried against the chart's least-privilege RBAC. The chart's admission policy is left out
    of the install: it is cluster-wide, and the operator's own refusal is under test here."""
    if request.param == "admin":
        return kube.kubeconfig
    ns = make_namespace()
    name = release(ns, sets={"watchNamespaces": "{" + cluster.ns + "}",
                             "policy.admission.enabled": "false"})
    return token_kubeconfig(kube, ns, f"{name}-wabot-operator",
                            tmp_path / "operator-kubeconfig")


@pytest.fixture
def start_operator(operator_factory: Callable[..., OperatorProcess],  # noqa: F811
                   operator_rights: Path) -> Callable[..., OperatorProcess]:
    """Start an operator with `operator_rights` and the given WABOT_OPERATOR_* settings."""
    def start(**extra_env: str) -> OperatorProcess:
        return operator_factory(kubeconfig=operator_rights, extra_env=extra_env).start()
    return start


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()
