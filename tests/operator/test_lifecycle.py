"""A bot's life against a real control plane: create, run, suspend, resume, delete with each
retain policy, bad input. The operator runs as `python -m wabot_operator` (a subprocess)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.helpers import Cluster, OperatorProcess, PodRecorder, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

OWNER_KIND = "WhatsAppBot"


def phase(cluster: Cluster, name: str) -> str | None:
    return (cluster.bot(name).get("status") or {}).get("phase")


def running_pod(cluster: Cluster, name: str) -> client.V1Pod | None:
    pod = cluster.pod(name)
    if pod is not None and pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
        return pod
    return None


def owners(obj: Any) -> list[tuple[str, str, bool]]:
    return [(r.kind, r.uid, bool(r.controller)) for r in obj.metadata.owner_references or []]


def test_create_makes_every_child_and_reports_the_running_pod(
        cluster: Cluster, operator: OperatorProcess) -> None:
    bot = cluster.create_bot("sales", {
        "resources": {"limits": {"cpu": "300m", "memory": "200Mi"}},
        "env": [{"name": "LOG_LEVEL", "value": "debug"}],
    })
    uid = bot["metadata"]["uid"]

    pod = eventually(lambda: running_pod(cluster, "wabot-sales"), what="pod Running")
    assert pod.spec.node_name.startswith("kwok-node-")
    assert owners(pod) == [(OWNER_KIND, uid, True)]
    c = pod.spec.containers[0]
    env = {e.name: e.value if e.value_from is None else e.value_from for e in c.env}
    assert env["ROLE"] == "worker" and env["BOT_ID"] == "sales"
    assert env["SERVER_NAME"] == "acme" and env["WABOT_BOT_NAME"] == "sales"
    assert env["WABOT_LEASE_NAME"] == "wabot-sales" and env["AUTH_DIR"] == "/var/lib/wabot"
    assert env["WABOT_NAMESPACE"].field_ref.field_path == "metadata.namespace"
    assert env["POD_NAME"].field_ref.field_path == "metadata.name"
    assert env["LOG_LEVEL"] == "debug"
    assert c.image == "registry.invalid/wabot-worker:test"
    # the spec's cpu and memory over the template's resources: its ephemeral-storage stays
    assert c.resources.limits == {"cpu": "300m", "memory": "200Mi", "ephemeral-storage": "256Mi"}
    assert c.resources.requests == {"cpu": "50m", "memory": "96Mi", "ephemeral-storage": "64Mi"}
    assert c.security_context.read_only_root_filesystem is True
    assert c.security_context.capabilities.drop == ["ALL"]
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.service_account_name == "wabot-sales"
    assert pod.metadata.annotations["wabot.io/pod-spec-hash"]
    claim = next(v for v in pod.spec.volumes if v.name == "auth").persistent_volume_claim
    assert claim.claim_name == "wabot-sales-auth"

    pvc = cluster.pvc("wabot-sales-auth")
    assert pvc is not None
    assert pvc.metadata.owner_references is None  # retainPolicy Retain (the default)
    assert pvc.spec.resources.requests["storage"] == "256Mi"
    assert pvc.metadata.labels["wabot.io/bot"] == "sales"
    sa = cluster.core.read_namespaced_service_account("wabot-sales", cluster.ns)
    role = cluster.rbac.read_namespaced_role("wabot-sales", cluster.ns)
    rb = cluster.rbac.read_namespaced_role_binding("wabot-sales", cluster.ns)
    lease = cluster.coord.read_namespaced_lease("wabot-sales", cluster.ns)
    for obj in (sa, role, rb, lease):
        assert owners(obj) == [(OWNER_KIND, uid, True)], obj.kind
        assert obj.metadata.labels["wabot.io/server"] == "acme"
    assert {(tuple(r.resources), tuple(r.resource_names)) for r in role.rules} == {
        (("whatsappbots",), ("sales",)), (("whatsappbots/status",), ("sales",)),
        (("leases",), ("wabot-sales",))}
    assert [(s.kind, s.name, s.namespace) for s in rb.subjects] == [
        ("ServiceAccount", "wabot-sales", cluster.ns)]
    assert lease.spec.holder_identity is None

    # No worker runs under kwok, so the bot waits for its worker's report.
    eventually(lambda: phase(cluster, "sales") == "Connecting", what="phase Connecting")
    status = cluster.bot("sales")["status"]
    generation = cluster.bot("sales")["metadata"]["generation"]
    assert status["observedGeneration"] == generation
    assert status["podName"] == "wabot-sales"
    conds = {c["type"]: c for c in status["conditions"]}
    assert set(conds) == {"Ready", "Paired", "Connected", "PodScheduled", "Degraded"}
    assert conds["PodScheduled"]["status"] == "True"
    assert conds["Ready"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == generation for c in conds.values())
    assert cluster.bot("sales")["metadata"]["finalizers"] == ["wabot.io/finalizer"]

    (created,) = [e for e in cluster.events_for("sales") if e.reason == "Created"]
    assert "Pod wabot-sales (spec hash" in created.message  # one Event for all seven objects

    assert operator.metric("wabot_bots", phase="Connecting") == 1
    assert operator.metric("wabot_bots", phase="Pending") == 0
    assert operator.metric("wabot_operator_reconcile_total", result="success") >= 1
    assert operator.metric("wabot_operator_reconcile_duration_seconds_count") >= 1


def test_status_worker_subtree_is_never_touched_by_the_operator(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("w")
    eventually(lambda: phase(cluster, "w") == "Connecting", what="phase Connecting")
    pod = cluster.pod("wabot-w")
    assert pod is not None
    started = pod.status.start_time.isoformat()
    report = {"state": "Pairing", "podName": "wabot-w", "updatedAt": started.replace(
        "+00:00", "Z"), "pairing": {"method": "qr", "qr": "2@payload"}}
    # What the worker does: a merge patch on its own subtree of the status subresource.
    cluster.custom.patch_namespaced_custom_object_status(
        "wabot.io", "v1alpha1", cluster.ns, "whatsappbots", "w", {"status": {"worker": report}},
        _content_type="application/merge-patch+json")
    eventually(lambda: phase(cluster, "w") == "Pairing", what="phase Pairing")
    assert cluster.condition("w", "Paired")["reason"] == "AwaitingPairing"  # type: ignore[index]
    cluster.patch_bot("w", {"resources": {"limits": {"cpu": "400m", "memory": "256Mi"}}})
    eventually(lambda: cluster.bot("w")["status"]["observedGeneration"] == 2,
               what="generation 2 observed")
    assert cluster.bot("w")["status"]["worker"]["pairing"]["qr"] == "2@payload"


def test_suspend_removes_the_pod_keeps_the_volume_and_resume_brings_it_back(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("s")
    eventually(lambda: running_pod(cluster, "wabot-s"), what="pod Running")
    pvc_uid = cluster.pvc("wabot-s-auth").metadata.uid  # type: ignore[union-attr]

    cluster.patch_bot("s", {"suspend": True})
    eventually(lambda: cluster.pod("wabot-s") is None, what="pod gone")
    eventually(lambda: phase(cluster, "s") == "Suspended", what="phase Suspended")
    assert cluster.pvc("wabot-s-auth").metadata.uid == pvc_uid  # type: ignore[union-attr]
    assert cluster.condition("s", "Ready")["reason"] == "Suspended"  # type: ignore[index]
    ps = cluster.condition("s", "PodScheduled")
    assert ps is not None and (ps["status"], ps["reason"]) == ("False", "Suspended")

    cluster.patch_bot("s", {"suspend": False})
    pod = eventually(lambda: running_pod(cluster, "wabot-s"), what="pod back")
    assert next(v for v in pod.spec.volumes if v.name == "auth").persistent_volume_claim \
        .claim_name == "wabot-s-auth"
    assert cluster.pvc("wabot-s-auth").metadata.uid == pvc_uid  # type: ignore[union-attr]
    eventually(lambda: phase(cluster, "s") == "Connecting", what="phase Connecting")


def test_delete_with_retain_keeps_the_volume_unowned(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("keep", {"storage": {"retainPolicy": "Retain"}})
    eventually(lambda: running_pod(cluster, "wabot-keep"), what="pod Running")
    pvc_uid = cluster.pvc("wabot-keep-auth").metadata.uid  # type: ignore[union-attr]

    cluster.delete_bot("keep")
    eventually(lambda: cluster.bot_gone("keep"), what="bot deleted")
    # The garbage collector removes what the bot owned...
    eventually(lambda: cluster.pod("wabot-keep") is None, what="pod collected")
    eventually(lambda: not cluster.rbac.list_namespaced_role(
        cluster.ns, label_selector="wabot.io/bot=keep").items, what="role collected")
    # ...and keeps the session.
    pvc = cluster.pvc("wabot-keep-auth")
    assert pvc is not None and pvc.metadata.uid == pvc_uid
    assert pvc.metadata.deletion_timestamp is None
    assert not pvc.metadata.owner_references
    reasons = {e.reason for e in cluster.events_for("keep")}
    assert "VolumeRetained" in reasons

    # A new bot of the same name picks the session up again.
    cluster.create_bot("keep")
    eventually(lambda: running_pod(cluster, "wabot-keep"), what="pod Running again")
    assert cluster.pvc("wabot-keep-auth").metadata.uid == pvc_uid  # type: ignore[union-attr]


def test_retain_switched_from_delete_keeps_the_volume(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("flip", {"storage": {"retainPolicy": "Delete"}})
    eventually(lambda: (cluster.pvc("wabot-flip-auth") or client.V1PersistentVolumeClaim())
               .metadata and cluster.pvc("wabot-flip-auth").metadata.owner_references,  # type: ignore[union-attr]
               what="owned PVC")
    cluster.patch_bot("flip", {"storage": {"retainPolicy": "Retain"}})
    eventually(lambda: not cluster.pvc("wabot-flip-auth").metadata.owner_references,  # type: ignore[union-attr]
               what="owner reference removed")
    cluster.delete_bot("flip")
    eventually(lambda: cluster.bot_gone("flip"), what="bot deleted")
    eventually(lambda: cluster.pod("wabot-flip") is None, what="pod collected")
    assert cluster.pvc("wabot-flip-auth") is not None


def test_delete_with_delete_removes_the_volume(
        cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("drop", {"storage": {"retainPolicy": "Delete"}})
    eventually(lambda: running_pod(cluster, "wabot-drop"), what="pod Running")
    pvc = cluster.pvc("wabot-drop-auth")
    assert pvc is not None
    assert [(r.kind, r.name) for r in pvc.metadata.owner_references] == [(OWNER_KIND, "drop")]

    cluster.delete_bot("drop")
    eventually(lambda: cluster.bot_gone("drop"), what="bot deleted")
    eventually(lambda: cluster.pvc("wabot-drop-auth") is None, timeout=90, what="PVC deleted")
    eventually(lambda: cluster.pod("wabot-drop") is None, what="pod collected")


def test_failed_pod_is_replaced(cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("evict")
    old = eventually(lambda: running_pod(cluster, "wabot-evict"), what="pod Running")
    # What an eviction leaves behind: a pod in phase Failed that nobody restarts.
    cluster.core.patch_namespaced_pod_status("wabot-evict", cluster.ns, {"status": {
        "phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}})
    new = eventually(lambda: (p := running_pod(cluster, "wabot-evict")) is not None
                     and p.metadata.uid != old.metadata.uid and p, what="replacement Running")
    assert new.metadata.name == "wabot-evict"
    reasons = [e.message for e in cluster.events_for("evict") if e.reason == "PodDeleted"]
    assert any("Evicted" in m for m in reasons)


def test_deleted_pod_is_recreated(cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.create_bot("again")
    old = eventually(lambda: running_pod(cluster, "wabot-again"), what="pod Running")
    cluster.core.delete_namespaced_pod("wabot-again", cluster.ns)
    eventually(lambda: (p := running_pod(cluster, "wabot-again")) is not None
               and p.metadata.uid != old.metadata.uid, what="pod recreated")


def test_a_pod_the_api_server_refuses_degrades_the_bot_without_a_crash(
        cluster: Cluster, operator: OperatorProcess) -> None:
    """Valid for the CRD, impossible for a pod: the default memory request (96Mi) exceeds
    this limit. The bot says so in its status; the operator keeps serving other bots."""
    cluster.create_bot("tight", {"resources": {"limits": {"memory": "64Mi"}}})
    d = eventually(lambda: (c := cluster.condition("tight", "Degraded")) and
                   c["status"] == "True" and c, what="Degraded")
    assert d["reason"] == "PodRejected"
    assert "memory" in d["message"]
    assert phase(cluster, "tight") == "Pending"
    assert any(e.reason == "PodRejected" and e.type == "Warning"
               for e in cluster.events_for("tight"))
    assert operator.metric("wabot_operator_reconcile_errors_total") >= 1
    assert operator.metric("wabot_operator_reconcile_total", result="error") >= 1
    cluster.create_bot("fine")
    eventually(lambda: running_pod(cluster, "wabot-fine"), what="other bot unaffected")
    assert operator.healthy()
    # Fixing the spec heals it.
    cluster.patch_bot("tight", {"resources": {"requests": {"memory": "32Mi"}}})
    eventually(lambda: running_pod(cluster, "wabot-tight"), what="pod after the fix")
    eventually(lambda: cluster.condition("tight", "Degraded")["status"] == "False",  # type: ignore[index]
               what="no longer degraded")


def test_pods_are_admitted_under_pod_security_restricted(
        cluster: Cluster, operator: OperatorProcess) -> None:
    ns = cluster.core.read_namespace(cluster.ns)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    cluster.create_bot("psa")
    pod = eventually(lambda: running_pod(cluster, "wabot-psa"), what="pod Running")
    # The enforcement is real: the same pod without its hardening is refused.
    weak = client.ApiClient().sanitize_for_serialization(pod)
    weak["metadata"] = {"name": "weak", "namespace": cluster.ns}
    weak.pop("status", None)
    weak["spec"].pop("nodeName", None)
    weak["spec"]["securityContext"] = {}
    weak["spec"]["containers"][0]["securityContext"] = {}
    with pytest.raises(ApiException) as refused:
        cluster.core.create_namespaced_pod(cluster.ns, weak, dry_run="All")
    assert refused.value.status == 403
    assert "violates PodSecurity" in str(refused.value.body)


def test_json_logs_name_the_bot_and_its_tenant(
        cluster: Cluster, operator_factory: Callable[..., OperatorProcess]) -> None:
    op = operator_factory(extra_env={"WABOT_OPERATOR_LOG_FORMAT": "json"}).start()
    cluster.create_bot("logged", {"serverName": "globex"})
    eventually(lambda: "Pod wabot-logged" in op.log(), what="a log line about the pod")
    records = [json.loads(line) for line in op.log().splitlines() if line.startswith("{")]
    created = [r for r in records if "Pod wabot-logged" in r.get("message", "")]
    assert created, records[-5:]
    assert created[0]["bot"] == "logged"
    assert created[0]["namespace"] == cluster.ns
    assert created[0]["tenant"] == "globex"


def test_a_second_bot_of_the_same_identity_does_not_run(
        cluster: Cluster, operator_factory: Callable[..., OperatorProcess]) -> None:
    """Issue 22: two WhatsAppBots with the same serverName and botId in one namespace got
    BOT_ID=shared SERVER_NAME=acme both, and their database rows mixed. The second one now
    gets no pod, a condition naming the first and an Event; it runs once the first is gone,
    and a restarted operator never lets it run in between."""
    op = operator_factory().start()
    cluster.create_bot("shared")
    eventually(lambda: cluster.pod("wabot-shared"), what="first bot's pod")
    cluster.create_bot("copy", {"botId": "shared"})

    def refused() -> dict[str, Any] | None:
        c = cluster.condition("copy", "Degraded")
        return c if c is not None and c["reason"] == "DuplicateBotId" else None

    degraded = eventually(refused, what="the copy refused",
                          explain=lambda: cluster.describe_bot("copy"))
    assert "WhatsAppBot shared" in degraded["message"]
    assert cluster.bot("copy")["status"]["phase"] == "Failed"
    assert cluster.pod("wabot-copy") is None
    eventually(lambda: [e for e in cluster.events_for("copy") if e.reason == "DuplicateBotId"],
               what="a DuplicateBotId Event")
    # A restarted operator keeps the copy without a pod from its first pass on.
    op.stop()
    with PodRecorder(cluster.api_client, cluster.ns, "copy") as rec:
        op = operator_factory().start()
        cluster.patch_bot("copy", {"rateLimit": {"perChatPerMinute": 5}})  # another pass
        time.sleep(3)
    assert rec.error is None and not rec.events, rec.events
    # The first one goes: the copy takes over.
    cluster.delete_bot("shared")
    eventually(lambda: cluster.pod("wabot-copy"), timeout=60, what="the copy's pod")
    eventually(lambda: (cluster.condition("copy", "Degraded") or {}).get("reason")
               != "DuplicateBotId", what="the copy no longer refused")
