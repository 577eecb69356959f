"""The chart against a real API server: every rendered object accepted (server-side dry-run with
strict field validation), a real `helm install` whose operator Deployment becomes Available on a
simulated node in a namespace that enforces the Restricted Pod Security Standard, and the
chart's RBAC proven sufficient by running the operator with its ServiceAccount's own token."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import Kube
from tests.packaging.conftest import (
    ALL_VALUES,
    eventually,
    helm,
    render_text,
    token_kubeconfig,
)
from wabot.spec import API_GROUP, API_VERSION, PLURAL

pytestmark = pytest.mark.cluster

# An HTTP 403 in the operator's log ("(403)", "403 Forbidden"), not the digits inside a log
# timestamp's milliseconds (",403]") or a hash: a run failed on "19:04:01,403".
HTTP_403 = re.compile(r"(?<![\w,])403(?!\w)")


def _namespaced_sets(release_ns: str, watched: list[str],
                     keys_ns: str | None = None) -> dict[str, str]:
    sets = {"watchNamespaces": "{" + ",".join(watched) + "}"} if watched else {}
    if keys_ns is not None:
        # A server-side dry run creates nothing: the Role for the API keys needs its namespace
        # to exist already, so the chart does not create it here.
        sets |= {"gateway.keysNamespace": keys_ns, "gateway.createKeysNamespace": "false"}
    return sets


@pytest.mark.parametrize("everything", [False, True], ids=["defaults", "everything-enabled"])
def test_rendered_chart_is_accepted_by_the_api_server(
        kube: Kube, monitoring_crds: None, make_namespace: Callable[[], str],
        everything: bool) -> None:
    release_ns = make_namespace()
    watched = [make_namespace(), make_namespace()] if everything else []
    keys_ns = make_namespace() if everything else None
    manifest = render_text(*([ALL_VALUES] if everything else []), namespace=release_ns,
                           release=f"dry-{uuid.uuid4().hex[:6]}",
                           sets=_namespaced_sets(release_ns, watched, keys_ns))
    out = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                       input=manifest, check=False)
    assert out.returncode == 0, out.stderr
    accepted = [line for line in out.stdout.splitlines() if "(server dry run)" in line]
    expected = sum(1 for d in yaml.safe_load_all(manifest) if d)
    assert len(accepted) == expected, out.stdout
    assert "Warning" not in out.stderr, out.stderr  # e.g. a PodSecurity or deprecation warning


def _deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    out = kube.kubectl("-n", namespace, "get", "deployment", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _available(kube: Kube, namespace: str, name: str, replicas: int) -> bool:
    status = _deployment(kube, namespace, name).get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return (conditions.get("Available") == "True"
            and status.get("availableReplicas", 0) == replicas
            and status.get("updatedReplicas", 0) == replicas)


def test_helm_install_makes_the_operator_available(
        kube: Kube, release: Callable[..., str], make_namespace: Callable[[], str]) -> None:
    ns = make_namespace()
    name = release(ns)
    fullname = f"{name}-wabot-operator"
    eventually(lambda: _available(kube, ns, fullname, 1), timeout=120,
               what=f"deployment {fullname} Available")
    pods = json.loads(kube.kubectl("-n", ns, "get", "pods", "-l",
                                   "app.kubernetes.io/component=operator",
                                   "-o", "json").stdout)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["spec"]["serviceAccountName"] == fullname
    # Admitted under `enforce: restricted`: the pod really is non-root, read-only, no caps.
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    notes = helm("status", name, "--namespace", ns, kubeconfig=kube.kubeconfig).stdout
    assert "kubectl get whatsappbots -A -w" in notes
    assert f"Watching: namespaces {ns} (the release namespace" in notes
    # On by default: the operator's and the bots' NetworkPolicies, the bots' RBAC binding in the
    # release namespace only.
    for kind, obj in (("networkpolicy", fullname), ("networkpolicy", f"{fullname}-bots"),
                      ("rolebinding", f"{fullname}-bots")):
        assert kube.kubectl("-n", ns, "get", kind, obj, check=False).returncode == 0, (kind, obj)


def test_helm_install_everything_enabled_with_peering_replicas(
        kube: Kube, monitoring_crds: None, release: Callable[..., str],
        make_namespace: Callable[[], str]) -> None:
    ns, watched = make_namespace(), make_namespace()
    name = release(ns, ALL_VALUES, sets={"watchNamespaces": "{" + watched + "}"})
    fullname = f"{name}-wabot-operator"
    eventually(lambda: _available(kube, ns, fullname, 2), timeout=120,
               what=f"deployment {fullname} Available with 2 replicas")
    for kind, obj in (("servicemonitor", fullname), ("podmonitor", f"{fullname}-bots"),
                      ("prometheusrule", fullname), ("configmap", f"{fullname}-dashboards"),
                      ("poddisruptionbudget", fullname), ("networkpolicy", fullname)):
        assert kube.kubectl("-n", ns, "get", kind, obj, check=False).returncode == 0, (kind, obj)
    assert kube.kubectl("-n", watched, "get", "rolebinding", f"{fullname}-bots",
                        check=False).returncode == 0
    assert kube.kubectl("-n", watched, "get", "networkpolicy", f"{fullname}-bots",
                        check=False).returncode == 0
    # The API keys' namespace of their own, made by the chart, with the gateway's only Secrets
    # rule in it.
    keys_ns = f"{ns}-api-keys"
    assert kube.kubectl("-n", keys_ns, "get", "role", f"{fullname}-gateway-keys",
                        check=False).returncode == 0


# --- the chart's RBAC is enough for the real operator ----------------------------------------


@pytest.mark.slow
def test_operator_runs_on_the_charts_rbac_alone(
        kube: Kube, release: Callable[..., str], make_namespace: Callable[[], str],
        tmp_path: Path) -> None:
    """Install the chart (watching one namespace, peering on), then run the operator with the
    chart's ServiceAccount token instead of the admin's: it must create every object of a bot
    (including the bot's Role, which needs the operator to hold what it grants), run it, and
    remove it again, without a single 403."""
    from tests.operator.helpers import OperatorProcess

    ns, bots_ns = make_namespace(), make_namespace()
    name = release(ns, sets={"watchNamespaces": "{" + bots_ns + "}",
                             "operator.peering": "true"})
    fullname = f"{name}-wabot-operator"
    kubeconfig = token_kubeconfig(kube, ns, fullname, tmp_path / "operator-kubeconfig")

    api = kube.api_client()
    assert isinstance(api, client.ApiClient)
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_secret(bots_ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="acme-db", labels={"wabot.io/bot-secret": "true"}),
        string_data={"DATABASE_URL": "postgresql://acme@db/acme"}))

    operator = OperatorProcess(namespace=bots_ns, kubeconfig=kubeconfig,
                               log_path=tmp_path / "operator.log", standalone=False,
                               extra_env={"WABOT_OPERATOR_PEERING_NAME": "wabot",
                                          "WABOT_OPERATOR_PRIORITY": "7"})
    operator.start()
    try:
        custom.create_namespaced_custom_object(API_GROUP, API_VERSION, bots_ns, PLURAL, {
            "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "WhatsAppBot",
            "metadata": {"name": "support"},
            "spec": {"serverName": "acme",
                     "database": {"secretRef": {"name": "acme-db", "key": "DATABASE_URL"}}}})

        def pod_running() -> bool:
            try:
                pod = core.read_namespaced_pod("wabot-support", bots_ns)
            except ApiException:
                return False
            return bool(pod.status and pod.status.phase == "Running")

        eventually(pod_running, timeout=90, what="bot pod Running (kwok)")
        for kind, obj in (("pvc", "wabot-support-auth"), ("serviceaccount", "wabot-support"),
                          ("role", "wabot-support"), ("rolebinding", "wabot-support"),
                          ("lease.coordination.k8s.io", "wabot-support"),
                          ("kopfpeering.kopf.dev", "wabot")):
            assert kube.kubectl("-n", bots_ns, "get", kind, obj,
                                check=False).returncode == 0, (kind, obj, operator.log())
        role = json.loads(kube.kubectl("-n", bots_ns, "get", "role", "wabot-support",
                                       "-o", "json").stdout)
        assert not any("secrets" in r["resources"] for r in role["rules"])

        custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, bots_ns, PLURAL,
                                               "support")

        def bot_gone() -> bool:
            try:
                custom.get_namespaced_custom_object(API_GROUP, API_VERSION, bots_ns, PLURAL,
                                                    "support")
            except ApiException as e:
                return e.status == 404
            return False

        eventually(bot_gone, timeout=90, what="bot deleted through its finalizer")
        log = operator.log()
        assert not HTTP_403.search(log) and "Forbidden" not in log, log
    finally:
        with contextlib.suppress(ApiException):
            for bot in custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, bots_ns, PLURAL)["items"]:
                custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, bots_ns, PLURAL,
                                                       bot["metadata"]["name"])
        with contextlib.suppress(AssertionError):
            eventually(lambda: not custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, bots_ns, PLURAL)["items"], timeout=30)
        operator.stop()
        api.close()
