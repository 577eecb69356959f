"""Issue 21, findings 1, 2, 3 and 6, as the restricted tenant user against the real API server
and the running operator: what a bot's spec names (Secrets, a tenant, an image, scheduling
privileges, a huge object) reaches nothing the admin did not allow."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import Kube, kubectl_binary
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.security import record
from tests.security.conftest import TenantUser
from wabot import naming

pytestmark = pytest.mark.cluster
SECTION = record.SECTION
REPO = Path(__file__).resolve().parents[2]
SECRET_VALUE = "postgresql://payroll:Sup3r-S3cret@db.internal/payroll"


def secret(cluster: Cluster, name: str, labels: dict[str, str] | None = None,
           **data: str) -> None:
    cluster.core.create_namespaced_secret(cluster.ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=labels), string_data=data))


def refused(cluster: Cluster, bot: str, reason: str) -> dict[str, Any]:
    """The bot ends Failed with Degraded=`reason`, and the operator made nothing for it."""
    def failed() -> dict[str, Any] | None:
        degraded = cluster.condition(bot, "Degraded")
        if degraded is None or degraded["reason"] != reason:
            return None
        return degraded
    degraded: dict[str, Any] = eventually(failed, what=f"{bot}: Degraded {reason}",
                                          explain=lambda: cluster.describe_bot(bot))
    assert cluster.bot(bot)["status"]["phase"] == "Failed"
    child = naming.child_name(bot)
    assert cluster.pod(child) is None
    assert cluster.pvc(naming.pvc_name(bot)) is None
    with pytest.raises(ApiException) as e:
        cluster.core.read_namespaced_service_account(child, cluster.ns)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        cluster.rbac.read_namespaced_role(child, cluster.ns)
    assert e.value.status == 404
    warnings = eventually(lambda: [ev for ev in cluster.events_for(bot) if ev.reason == reason],
                          what=f"{bot}: a {reason} Event")
    assert warnings[0].type == "Warning"
    return degraded


def rights(request: pytest.FixtureRequest) -> str:
    return f"operator with {request.node.callspec.params['operator_rights']} rights"


def test_finding_1_a_bot_cannot_reach_a_secret_the_admin_did_not_mark(
        cluster: Cluster, operator: OperatorProcess, tenant_user: TenantUser,
        request: pytest.FixtureRequest) -> None:
    secret(cluster, "payroll", value=SECRET_VALUE)
    secret(cluster, "other-tenant", {"wabot.io/bot-secret": "true", "wabot.io/tenant": "globex"},
           value=SECRET_VALUE)
    assert not tenant_user.can_i("get", "secret/payroll")
    for bot, field in (("thief", "database"), ("hooker", "webhook"), ("proxied", "proxy"),
                       ("crosser", "database")):
        name = "other-tenant" if bot == "crosser" else "payroll"
        ref: dict[str, Any] = {"secretRef": {"name": name}}
        if field == "webhook":
            ref["url"] = "https://hooks.example/x"
        tenant_user.create_bot(bot, {"serverName": "acme", field: ref})
    for bot in ("thief", "hooker", "proxied", "crosser"):
        degraded = refused(cluster, bot, "SecretNotAllowed")
        assert SECRET_VALUE not in str(degraded)
    # Nothing of the value anywhere the user can read: statuses, Events.
    readable = str(tenant_user.custom.list_namespaced_custom_object(
        "wabot.io", "v1alpha1", cluster.ns, "whatsappbots"))
    readable += str(client.CoreV1Api(tenant_user.api_client).list_namespaced_event(cluster.ns))
    assert SECRET_VALUE not in readable

    # A Secret the admin marked for this tenant is injected by the kubelet, and still not
    # readable with the bot's own token.
    secret(cluster, "acme-db", {"wabot.io/bot-secret": "true", "wabot.io/tenant": "acme"},
           value="postgresql://acme@db/acme")
    tenant_user.create_bot("honest", {"serverName": "acme",
                                      "database": {"secretRef": {"name": "acme-db"}}})
    pod = eventually(lambda: cluster.pod("wabot-honest"), what="honest's pod")
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["DATABASE_URL"].value_from.secret_key_ref.name == "acme-db"
    bot_sa = f"system:serviceaccount:{cluster.ns}:wabot-honest"
    assert not cluster.can(bot_sa, "get", "secrets", "acme-db")
    assert not cluster.can(bot_sa, "get", "secrets", "payroll")

    # The admin takes the mark away: the running bot is stopped, not left with the Secret.
    cluster.core.patch_namespaced_secret("acme-db", cluster.ns,
                                         {"metadata": {"labels": {"wabot.io/bot-secret": None}}})
    eventually(lambda: cluster.pod("wabot-honest") is None, timeout=90,
               what="pod of a bot whose Secret lost its mark deleted")
    degraded = cluster.condition("honest", "Degraded")
    assert degraded is not None and degraded["reason"] == "SecretNotAllowed"
    record.finding("1", f"unmarked or another tenant's Secret named in a spec ({rights(request)})",
                   "4/4 refused (SecretNotAllowed): no pod, volume or Role; value in statuses "
                   "and Events: none; a bot's token reads no Secret, its own DSN's neither; "
                   "unmarking a Secret stops the bot using it")


def test_finding_2_a_bot_cannot_claim_another_tenant_or_its_database_key(
        cluster: Cluster, start_operator: Callable[..., OperatorProcess],
        tenant_user: TenantUser, hosts: Callable[[str], None],
        request: pytest.FixtureRequest) -> None:
    hosts("acme")
    secret(cluster, "wabot-db", acme="postgresql://acme_role@db/wabot",
           globex="postgresql://globex_role:globex-pw@db/wabot")
    start_operator(WABOT_OPERATOR_DATABASE_SECRET="wabot-db:{serverName}")
    tenant_user.create_bot("claimer", {"serverName": "globex"})
    degraded = refused(cluster, "claimer", "TenantNotAllowed")
    assert "globex" in degraded["message"] and "wabot.io/tenants" in degraded["message"]

    # Its own tenant's bot gets its own key of the shared Secret, through the kubelet only.
    tenant_user.create_bot("mine", {"serverName": "acme"})
    pod = eventually(lambda: cluster.pod("wabot-mine"), what="acme bot's pod")
    dsn = {e.name: e for e in pod.spec.containers[0].env}["DATABASE_URL"]
    assert dsn.value_from.secret_key_ref.to_dict() == {"name": "wabot-db", "key": "acme",
                                                       "optional": None}
    bot_sa = f"system:serviceaccount:{cluster.ns}:wabot-mine"
    assert not cluster.can(bot_sa, "get", "secrets", "wabot-db")
    # Naming the shared Secret's other key directly is refused, labelled or not.
    cluster.core.patch_namespaced_secret("wabot-db", cluster.ns, {"metadata": {"labels": {
        "wabot.io/bot-secret": "true"}}})
    tenant_user.create_bot("keythief", {"serverName": "acme", "database": {
        "secretRef": {"name": "wabot-db", "key": "globex"}}})
    refused(cluster, "keythief", "SecretNotAllowed")
    # An image of the tenant's choosing would run with the bot's token and Secrets.
    tenant_user.create_bot("miner", {"serverName": "acme", "image": "evil.example/miner:1"})
    degraded = refused(cluster, "miner", "ImageNotAllowed")
    assert "spec.image" in degraded["message"]
    record.finding("2", f"another tenant's serverName, DSN key or a foreign image "
                   f"({rights(request)})",
                   "refused (TenantNotAllowed, SecretNotAllowed, ImageNotAllowed): no pod; "
                   "the tenant's own key reaches its bot through the kubelet only")


def test_finding_2_the_charts_admission_policy_refuses_another_tenant_at_apply(
        kube: Kube, cluster: Cluster, tenant_user: TenantUser,
        hosts: Callable[[str], None]) -> None:
    """The chart's ValidatingAdmissionPolicy, bound to this test's namespace only."""
    from devcluster.tools import find_tools

    selector = {"matchLabels": {"kubernetes.io/metadata.name": cluster.ns}}
    rendered = subprocess.run(
        [str(find_tools(build=False).helm), "template", f"sec-{cluster.ns}",
         str(REPO / "charts" / "wabot-operator"), "--kube-version", "1.34.4",
         "--show-only", "templates/admission-policy.yaml",
         "--set-json", f"policy.admission.namespaceSelector={json.dumps(selector)}"],
        check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy",
                                          "ValidatingAdmissionPolicyBinding"]
    kube.kubectl("apply", "-f", "-", input=rendered)
    try:
        hosts("acme, initech")

        def refused_at_admission(server: str) -> str | None:
            try:
                tenant_user.create_bot("claimer", {"serverName": server})
            except ApiException as e:
                return str(e.body) if e.status in (403, 422) else None
            # The policy, or the namespace as admission caches it, was not current yet.
            tenant_user.custom.delete_namespaced_custom_object(
                "wabot.io", "v1alpha1", cluster.ns, "whatsappbots", "claimer")
            return None

        message = eventually(lambda: refused_at_admission("globex"), timeout=30, interval=1,
                             what="admission refusing another tenant")
        assert "may not host tenant globex" in message
        tenant_user.create_bot("ok", {"serverName": "initech"})
        kube.kubectl("annotate", "namespace", cluster.ns, "wabot.io/tenants-")
        # Without the annotation: only the tenant named like the namespace.
        message = eventually(lambda: refused_at_admission("acme"), timeout=30, interval=1,
                             what="admission refusing a tenant not named like the namespace")
        assert "may not host tenant acme" in message
        tenant_user.create_bot("same", {"serverName": cluster.ns})
        record.finding("2b", "another tenant's serverName at kubectl apply (the chart's "
                       "ValidatingAdmissionPolicy)", "refused by the API server: "
                       f"{message.split('denied request: ')[-1][:90]}...")
    finally:
        for doc in docs:
            kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"],
                         "--ignore-not-found", check=False)
        cluster.custom.delete_collection_namespaced_custom_object(
            "wabot.io", "v1alpha1", cluster.ns, "whatsappbots")


def test_finding_3_an_endlessly_nested_affinity_is_refused_by_the_api_server(
        tenant_user: TenantUser) -> None:
    # 5,000 levels, sent as JSON text (the Python client's own serializer would recurse).
    deep = '{"nodeAffinity":' * 5000 + "{}" + "}" * 5000
    body = ('{"apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot", "metadata": '
            '{"name": "deep"}, "spec": {"serverName": "acme", "affinity": ' + deep + "}}")
    out = tenant_user.kube.kubectl("create", "-f", "-", "-n", tenant_user.ns, "--as",
                                   tenant_user.user, input=body, check=False)
    assert out.returncode != 0
    assert "affinity" in out.stderr, out.stderr[:2000]
    assert tenant_user.kube.kubectl("-n", tenant_user.ns, "get", "whatsappbot", "deep",
                                    check=False).returncode != 0
    record.finding("3", "an affinity nested 5,000 levels deep",
                   "refused by the API server (typed core/v1 Affinity): "
                   f"{out.stderr.strip().splitlines()[0][:100]}")
    # A real affinity is still fine.
    tenant_user.create_bot("placed", {"serverName": "acme", "affinity": {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                              "labelSelector": {"matchLabels": {
                                                  "app.kubernetes.io/component": "bot"}}}}]}}})


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("priorityClassName", "system-node-critical", "PriorityClassNotAllowed"),
    ("tolerations", [{"operator": "Exists"}], "TolerationNotAllowed"),
    ("nodeSelector", {"node-role.kubernetes.io/control-plane": ""}, "NodeSelectorNotAllowed"),
])
def test_finding_6_scheduling_privileges_need_the_admins_allowance(
        cluster: Cluster, operator: OperatorProcess, tenant_user: TenantUser, field: str,
        value: Any, reason: str, request: pytest.FixtureRequest) -> None:
    tenant_user.create_bot("greedy", {"serverName": "acme", field: value})
    degraded = refused(cluster, "greedy", reason)
    assert f"spec.{field}" in degraded["message"]
    record.finding("6", f"spec.{field}: {json.dumps(value)}", f"refused ({reason}), no pod")


def test_finding_6_what_the_admin_allows_reaches_the_pod(
        cluster: Cluster, start_operator: Callable[..., OperatorProcess],
        tenant_user: TenantUser) -> None:
    scheduling = client.SchedulingV1Api(cluster.api_client)
    pc = f"bots-{cluster.ns}"
    scheduling.create_priority_class(client.V1PriorityClass(
        metadata=client.V1ObjectMeta(name=pc), value=1000))
    try:
        start_operator(WABOT_OPERATOR_ALLOWED_PRIORITY_CLASSES=pc,
                       WABOT_OPERATOR_ALLOWED_TOLERATIONS="dedicated")
        tenant_user.create_bot("vip", {"serverName": "acme", "priorityClassName": pc,
                                       "tolerations": [{"key": "dedicated",
                                                        "operator": "Exists"}]})
        pod = eventually(lambda: cluster.pod("wabot-vip"), what="allowed bot's pod")
        assert pod.spec.priority_class_name == pc
        assert [t.key for t in pod.spec.tolerations or [] if t.key == "dedicated"]
    finally:
        scheduling.delete_priority_class(pc)


def test_kubectl_is_the_same_user(kube: Kube, tenant_user: TenantUser) -> None:
    """The impersonated user really is restricted (the fixture is not an admin in disguise)."""
    assert tenant_user.can_i("create", "whatsappbots.wabot.io")
    assert not tenant_user.can_i("get", "secrets")
    assert not tenant_user.can_i("create", "pods")
    assert not tenant_user.can_i("patch", "whatsappbots.wabot.io", "--subresource=status")
    assert kubectl_binary()
