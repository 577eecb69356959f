"""A bot's ServiceAccount reaches its own WhatsAppBot, status and Lease, no Secret at all (the
kubelet injects the ones its spec names), and nothing of any other bot (SubjectAccessReview
against the real RBAC authorizer, then the same with the bot's real token)."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.helpers import Cluster, OperatorProcess, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def make_secret(cluster: Cluster, name: str) -> None:
    cluster.core.create_namespaced_secret(cluster.ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"wabot.io/bot-secret": "true"}),
        string_data={"value": "postgresql://x"}))


def test_each_bot_reaches_only_its_own_objects(cluster: Cluster,
                                               operator: OperatorProcess) -> None:
    for bot in ("alpha", "beta"):
        make_secret(cluster, f"{bot}-dsn")
        cluster.create_bot(bot, {"database": {"secretRef": {"name": f"{bot}-dsn"}}})
    make_secret(cluster, "unreferenced")
    for bot in ("alpha", "beta"):
        eventually(lambda b=bot: cluster.pod(f"wabot-{b}"), what=f"{bot} pod")  # type: ignore[misc]

    me = f"system:serviceaccount:{cluster.ns}:wabot-alpha"
    can = cluster.can
    # Its own objects.
    assert can(me, "get", "whatsappbots", "alpha", group="wabot.io")
    assert can(me, "watch", "whatsappbots", "alpha", group="wabot.io")
    assert can(me, "patch", "whatsappbots", "alpha", group="wabot.io", subresource="status")
    assert can(me, "get", "leases", "wabot-alpha", group="coordination.k8s.io")
    assert can(me, "update", "leases", "wabot-alpha", group="coordination.k8s.io")
    # Not even the Secret its own spec names: the kubelet gives the pod its value.
    assert not can(me, "get", "secrets", "alpha-dsn")
    pod = cluster.pod("wabot-alpha")
    assert pod is not None
    dsn = {e.name: e for e in pod.spec.containers[0].env}["DATABASE_URL"]
    assert dsn.value_from.secret_key_ref.name == "alpha-dsn"
    # Another bot's.
    assert not can(me, "get", "whatsappbots", "beta", group="wabot.io")
    assert not can(me, "patch", "whatsappbots", "beta", group="wabot.io", subresource="status")
    assert not can(me, "get", "leases", "wabot-beta", group="coordination.k8s.io")
    assert not can(me, "update", "leases", "wabot-beta", group="coordination.k8s.io")
    assert not can(me, "get", "secrets", "beta-dsn")
    # Nothing broad: no listing Secrets, no Secret it does not reference, no spec edits, no
    # new Leases or pods, nothing in another namespace.
    assert not can(me, "list", "secrets")
    assert not can(me, "get", "secrets", "unreferenced")
    assert not can(me, "patch", "whatsappbots", "alpha", group="wabot.io")
    assert not can(me, "create", "leases", group="coordination.k8s.io")
    assert not can(me, "delete", "leases", "wabot-alpha", group="coordination.k8s.io")
    assert not can(me, "create", "pods")
    assert not can(me, "list", "whatsappbots", group="wabot.io")  # only with a name


def test_the_bots_real_token_is_held_to_the_same_rules(cluster: Cluster,
                                                       operator: OperatorProcess) -> None:
    for bot in ("one", "two"):
        cluster.create_bot(bot)
    for bot in ("one", "two"):
        eventually(lambda b=bot: cluster.pod(f"wabot-{b}"), what=f"{bot} pod")  # type: ignore[misc]
    token = cluster.core.create_namespaced_service_account_token(
        "wabot-one", cluster.ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    admin = cluster.api_client.configuration
    conf = client.Configuration()
    conf.host = admin.host
    conf.ssl_ca_cert = admin.ssl_ca_cert
    conf.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(conf) as as_bot:
        custom = client.CustomObjectsApi(as_bot)
        coord = client.CoordinationV1Api(as_bot)
        assert custom.get_namespaced_custom_object("wabot.io", "v1alpha1", cluster.ns,
                                                   "whatsappbots", "one")["metadata"]["name"]
        custom.patch_namespaced_custom_object_status(
            "wabot.io", "v1alpha1", cluster.ns, "whatsappbots", "one",
            {"status": {"worker": {"state": "Starting", "updatedAt": "2026-01-01T00:00:00Z"}}},
            _content_type="application/merge-patch+json")
        lease = coord.read_namespaced_lease("wabot-one", cluster.ns)
        lease.spec.holder_identity = "wabot-one"
        coord.replace_namespaced_lease("wabot-one", cluster.ns, lease)
        for call in (
            lambda: custom.get_namespaced_custom_object("wabot.io", "v1alpha1", cluster.ns,
                                                        "whatsappbots", "two"),
            lambda: custom.patch_namespaced_custom_object_status(
                "wabot.io", "v1alpha1", cluster.ns, "whatsappbots", "two",
                {"status": {"worker": {"state": "Connected",
                                       "updatedAt": "2026-01-01T00:00:00Z"}}},
                _content_type="application/merge-patch+json"),
            lambda: coord.read_namespaced_lease("wabot-two", cluster.ns),
        ):
            with pytest.raises(ApiException) as e:
                call()
            assert e.value.status == 403
