"""Proof that the control plane the other tests stand on is real: every behaviour the product
relies on (CRDs, RBAC with service-account tokens, scheduling onto simulated nodes, garbage
collection, PVC binding, Pod Security admission) really happens."""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import Kube
from tests.support import polling

pytestmark = pytest.mark.cluster

SMOKE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.wabot.io"},
    "spec": {
        "group": "smoke.wabot.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1}}}}}},
        }],
    },
}


eventually = functools.partial(polling.eventually, interval=0.25, retry_on=(ApiException,))


def restricted_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": "registry.invalid/smoke:1",
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
            }],
        },
    }


def test_crd_and_custom_object(kube: Kube, namespace: str) -> None:
    api = kube.api_client()
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(SMOKE_CRD)
    except ApiException as e:
        assert e.status == 409
    eventually(lambda: any(c.type == "Established" and c.status == "True" for c in
                           ext.read_custom_resource_definition("widgets.smoke.wabot.io")
                           .status.conditions or []))
    objs = client.CustomObjectsApi(api)
    body = {"apiVersion": "smoke.wabot.io/v1", "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"size": 3}}
    eventually(lambda: objs.create_namespaced_custom_object(
        "smoke.wabot.io", "v1", namespace, "widgets", body))
    got = objs.get_namespaced_custom_object("smoke.wabot.io", "v1", namespace, "widgets", "w1")
    assert got["spec"] == {"size": 3}
    bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
    with pytest.raises(ApiException) as err:
        objs.create_namespaced_custom_object("smoke.wabot.io", "v1", namespace, "widgets", bad)
    assert err.value.status == 422
    assert "spec.size" in err.value.body


def test_service_account_token_denied_until_role_binding(kube: Kube, namespace: str) -> None:
    api = kube.api_client()
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}).status.token

    sa_config = client.Configuration()
    sa_config.host = api.configuration.host
    sa_config.ssl_ca_cert = api.configuration.ssl_ca_cert
    sa_config.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.CoreV1Api(client.ApiClient(sa_config))

    with pytest.raises(ApiException) as denied:
        as_sa.list_namespaced_config_map(namespace)
    assert denied.value.status == 403  # authenticated (not 401), but not authorised

    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    eventually(lambda: as_sa.list_namespaced_config_map(namespace) is not None)
    with pytest.raises(ApiException) as still_denied:
        as_sa.list_namespaced_secret(namespace)
    assert still_denied.value.status == 403


def test_pod_reaches_running_on_a_simulated_node(kube: Kube, namespace: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    core.create_namespaced_pod(namespace, restricted_pod("runner"))

    def running() -> Any:
        pod = core.read_namespaced_pod("runner", namespace)
        return pod if pod.status.phase == "Running" else None

    pod = eventually(running)
    assert pod.spec.node_name
    assert pod.status.pod_ip
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def test_pod_security_restricted_is_enforced(kube: Kube, namespace: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    root_pod = restricted_pod("root")
    root_pod["spec"]["securityContext"] = {}
    root_pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, root_pod)
    assert err.value.status == 403
    assert "violates PodSecurity" in err.value.body


def test_owned_object_is_garbage_collected(kube: Kube, namespace: str) -> None:
    core = client.CoreV1Api(kube.api_client())
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "owned", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner.metadata.uid, "controller": True, "blockOwnerDeletion": True}]}})
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    eventually(gone)


def test_persistent_volume_claim_binds(kube: Kube, namespace: str) -> None:
    """The default StorageClass provisions and binds a claim for the pod that uses it (at
    once with Immediate binding, at scheduling with WaitForFirstConsumer, devcluster's and
    kind's default), and the pod runs."""
    core = client.CoreV1Api(kube.api_client())
    name = f"data-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "64Mi"}}}})
    pod = restricted_pod(f"{name}-user")
    pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": name}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    core.create_namespaced_pod(namespace, pod)
    eventually(lambda: core.read_namespaced_persistent_volume_claim(name, namespace)
               .status.phase == "Bound")
    eventually(lambda: core.read_namespaced_pod(f"{name}-user", namespace)
               .status.phase == "Running")


def test_api_server_reports_a_real_version_the_chart_accepts(kube: Kube) -> None:
    """The chart declares a minimum Kubernetes version; helm checks it against this answer, so
    a locally built API server must report its real release, not v0.0.0-master."""
    server = json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["major"] == "1", server
    assert int(server["minor"].rstrip("+")) >= 29, server
    assert server["gitVersion"].startswith("v1."), server
