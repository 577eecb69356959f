"""The reconcile pass against an in-memory API server double: orders of calls and the paths a
real API server will not produce on demand (a spec the CRD accepted but the model refuses, a
broken template, a foreign pod holding the name, API errors)."""

from __future__ import annotations

import copy
import itertools
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from wabot_operator.config import OperatorConfig
from wabot_operator.kube import KubeError
from wabot_operator.memory import BotMemory
from wabot_operator.reconcile import RETRY_AFTER_ERROR, Reconciler
from wabot_operator.statuswrite import PENDING_SETTLE
from wabot_operator.templates import TemplateStore

REPO = Path(__file__).resolve().parents[2]
NS = "t"


class FakeKube:
    """Enough of the API server: named objects per kind, 409 on a taken name, uid
    preconditions on delete, merge patches, and a log of every write."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.fail: dict[tuple[str, str], KubeError] = {}
        self._uids = itertools.count(1)
        self.tenants: str | None = "*"  # the namespace's wabot.io/tenants annotation

    def _check(self, op: str, kind: str) -> None:
        if (op, kind) in self.fail:
            raise self.fail[(op, kind)]

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kind, name = body["kind"], body["metadata"]["name"]
        self.calls.append(("create", kind, name))
        self._check("create", kind)
        if (kind, name) in self.objects:
            raise KubeError(409, "AlreadyExists", f"{kind} {name} already exists")
        obj = copy.deepcopy(dict(body))
        obj["metadata"]["uid"] = f"uid-{next(self._uids)}"
        obj["metadata"]["resourceVersion"] = "1"
        self.objects[(kind, name)] = obj
        return copy.deepcopy(obj)

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("read", kind, name))
        if (kind, name) not in self.objects:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        return copy.deepcopy(self.objects[(kind, name)])

    def read_metadata(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """The policy facts (not logged in `calls`: cached reads beside the pass's writes).
        The namespace lets every tenant in, as an admin's `wabot.io/tenants: "*"` does."""
        self._check("read_metadata", kind)
        if kind == "Namespace":
            annotations = {} if self.tenants is None else {"wabot.io/tenants": self.tenants}
            return {"metadata": {"name": name, "annotations": annotations}}
        if (kind, name) not in self.objects:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        return {"metadata": copy.deepcopy(self.objects[(kind, name)]["metadata"])}

    def list_all(self, kind: str, namespace: str,
                 label_selector: str) -> Iterator[dict[str, Any]]:
        self.calls.append(("list", kind, label_selector))
        self._check("list", kind)
        for (k, _), obj in list(self.objects.items()):
            if k == kind and label_selector in (obj["metadata"].get("labels") or {}):
                yield copy.deepcopy(obj)

    def patch(self, kind: str, namespace: str, name: str,
              patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", kind, name))
        self._check("patch", kind)
        obj = self.objects[(kind, name)]
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != obj["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        _merge(obj, copy.deepcopy(dict(patch)))
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> None:
        self.calls.append(("delete", kind, name))
        self._check("delete", kind)
        obj = self.objects.get((kind, name))
        if obj is None:
            raise KubeError(404, "NotFound", "gone")
        if uid is not None and obj["metadata"]["uid"] != uid:
            raise KubeError(409, "Conflict", "uid precondition failed")
        del self.objects[(kind, name)]

    def patch_bot_status(self, namespace: str, name: str,
                         patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("status", "WhatsAppBot", name))
        self.status_patches.append(copy.deepcopy(dict(patch)))
        return {}

    def writes(self, kind: str | None = None) -> list[tuple[str, str, str]]:
        return [c for c in self.calls
                if c[0] not in ("read", "list") and (kind is None or c[1] == kind)]


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v


RUNNING = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
           "conditions": [{"type": "PodScheduled", "status": "True"}]}


def run_on(pod: dict[str, Any], node: str | None = "node-1") -> dict[str, Any]:
    """The pod as the watch shows it once scheduled on `node` and Running."""
    if node is not None:
        pod["spec"]["nodeName"] = node
    pod["status"] = copy.deepcopy(RUNNING)
    return pod


def bot(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot",
        "metadata": {"name": "sales", "namespace": NS, "uid": "bot-uid", "generation": 1,
                     "resourceVersion": "10", **meta},
        "spec": {"serverName": "acme", **(spec or {})},
    }


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


def make_reconciler(kube: FakeKube, clock: Callable[[], float] | None = None,
                    **config: Any) -> Reconciler:
    """The reconciler under test on the repo's templates, with `clock` and config overrides."""
    cfg = OperatorConfig(templates_dir=REPO / "operator" / "bot-templates", worker_image="img:1",
                         standalone=True, **config)
    store = TemplateStore(cfg.templates_dir)
    if clock is None:
        return Reconciler(kube, cfg, store)  # type: ignore[arg-type]
    return Reconciler(kube, cfg, store, clock=clock)  # type: ignore[arg-type]


def first_pass_then_running(
        kube: FakeKube) -> tuple[Reconciler, BotMemory, list[float], dict[str, Any]]:
    """A reconciler on a settable clock (`now[0]`) after a new bot's first pass, and that
    bot's pod as the watch shows it once Running."""
    now = [100.0]
    r = make_reconciler(kube, clock=lambda: now[0])
    memory = BotMemory()
    r.reconcile(bot(), None, memory)
    return r, memory, now, run_on(kube.read("Pod", NS, "wabot-sales"))


@pytest.fixture
def reconciler(kube: FakeKube) -> Reconciler:
    return make_reconciler(kube)


def test_first_pass_creates_what_the_pod_needs_then_the_pod_then_the_rest(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """PVC (the scheduler waits for it), ServiceAccount (admission refuses a pod without it)
    and the API-token Secret (read once when the container starts) before the pod; the
    worker's Role, RoleBinding and Lease right after it, in the same pass."""
    out = reconciler.reconcile(bot(), None, BotMemory())
    creates = [c for c in kube.calls if c[0] == "create"]
    # The first three go out together (each is a round trip the pod waits for).
    assert sorted(creates[:3]) == [
        ("create", "PersistentVolumeClaim", "wabot-sales-auth"),
        ("create", "Secret", "wabot-sales-api"),
        ("create", "ServiceAccount", "wabot-sales"),
    ]
    assert creates[3:] == [
        ("create", "Pod", "wabot-sales"),
        ("create", "Role", "wabot-sales"),
        ("create", "RoleBinding", "wabot-sales"),
        ("create", "Lease", "wabot-sales"),
    ]
    assert out.result == "requeue" and out.delay is not None
    assert out.delay <= PENDING_SETTLE
    # One Event for everything the pass created, the pod included (an Event is an API
    # request), and no status yet: the new pod is given a moment to run (next test).
    assert [e.reason for e in out.events] == ["Created"]
    for what in ("ServiceAccount wabot-sales", "PersistentVolumeClaim wabot-sales-auth",
                 "Secret wabot-sales-api", "Pod wabot-sales (spec hash", "Role wabot-sales",
                 "RoleBinding wabot-sales", "Lease wabot-sales"):
        assert what in out.events[0].message
    assert kube.status_patches == []


def test_a_new_bot_whose_pod_runs_at_once_gets_one_status_write(kube: FakeKube) -> None:
    """The pod ran within PENDING_SETTLE: the first status says Connecting, in one write;
    a pod still Pending after that moment gets its Pending status written then."""
    r, memory, now, pod = first_pass_then_running(kube)
    now[0] += 0.8
    out = r.reconcile(bot(), pod, memory)
    (patch,) = kube.status_patches
    assert patch["status"]["phase"] == "Connecting"
    assert patch["status"]["podName"] == "wabot-sales"
    assert out.events == []  # the Created Event said it; no PhaseChanged for Connecting

    slow = FakeKube()
    r2 = make_reconciler(slow, clock=lambda: now[0])
    memory2 = BotMemory()
    r2.reconcile(bot(), None, memory2)
    out = r2.reconcile(bot(), None, memory2)  # the watch has not shown the pod yet
    assert slow.status_patches == []
    assert out.delay is not None and out.delay <= PENDING_SETTLE
    now[0] += PENDING_SETTLE
    r2.reconcile(bot(), None, memory2)
    (patch,) = slow.status_patches
    assert (patch["status"]["phase"], patch["status"]["podName"]) == ("Pending", "wabot-sales")


def test_steady_state_pass_makes_no_api_calls(kube: FakeKube, reconciler: Reconciler) -> None:
    memory = BotMemory()
    reconciler.reconcile(bot(), None, memory)
    pod = kube.read("Pod", NS, "wabot-sales")
    run_on(pod, node=None)
    current = bot(resourceVersion="11")
    reconciler.reconcile(current, pod, memory)
    current["status"] = kube.status_patches[-1]["status"]
    current["metadata"]["resourceVersion"] = "12"
    kube.calls.clear()
    out = reconciler.reconcile(current, pod, memory)
    assert kube.calls == []
    assert out.result == "success" and out.events == []


def test_a_changed_spec_deletes_and_only_a_later_pass_creates(
        kube: FakeKube, reconciler: Reconciler) -> None:
    memory = BotMemory()
    reconciler.reconcile(bot(), None, memory)
    old = kube.read("Pod", NS, "wabot-sales")
    changed = bot({"image": "img:2"}, generation=2)
    kube.calls.clear()
    reconciler.reconcile(changed, old, memory)
    assert ("delete", "Pod", "wabot-sales") in kube.calls
    assert ("create", "Pod", "wabot-sales") not in kube.calls
    # The watch still shows the old pod, now terminating: wait, do not create.
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.calls.clear()
    out = reconciler.reconcile(changed, old, memory)
    assert kube.writes("Pod") == [] and out.result == "requeue"
    # Gone: now it is created, with the new image.
    reconciler.reconcile(changed, None, memory)
    assert kube.read("Pod", NS, "wabot-sales")["spec"]["containers"][0]["image"] == "img:2"


def test_a_quick_replacement_costs_one_event_and_no_pending_status(kube: FakeKube) -> None:
    """A spec change on a running bot: PodDeleted (saying a replacement follows), the new pod
    without a second Event or a Secret read, and no Pending written while the old pod
    terminates and the new one starts (within PENDING_SETTLE)."""
    r, memory, now, running = first_pass_then_running(kube)
    now[0] += 1.0
    r.reconcile(bot(), running, memory)
    (written,) = kube.status_patches
    current = bot({"image": "img:2"}, generation=2, resourceVersion="30")
    current["status"] = written["status"]
    now[0] += 600.0  # long after: the Secret was read longer ago than the resync interval
    kube.calls.clear()
    out = r.reconcile(current, running, memory)
    assert [e.reason for e in out.events] == ["PodDeleted"]
    assert "replacement follows" in out.events[0].message
    terminating = {**running, "metadata": {**running["metadata"],
                                           "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    now[0] += 1.0
    r.reconcile(current, terminating, memory)
    now[0] += 1.0
    kube.calls.clear()
    out = r.reconcile(current, None, memory)  # gone: the replacement goes out
    assert kube.calls == [("create", "Pod", "wabot-sales")]  # no Secret read, no status
    assert out.events == []
    new = run_on(kube.read("Pod", NS, "wabot-sales"), "node-2")
    now[0] += 1.0
    r.reconcile(current, new, memory)
    # The new generation and the new node are written; the moment without a running pod is
    # not (no Pending write, and no Pending -> Connecting PhaseChanged).
    assert [p["status"]["phase"] for p in kube.status_patches] == ["Connecting"] * 3


def test_a_409_on_create_is_not_an_error_when_the_pod_is_ours(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """The watch lags behind the create: a pass that does not know the pod (an operator
    restarted meanwhile) tries again and meets 409. The operator that created it does not
    try again while the watch has not shown it yet."""
    memory = BotMemory()
    reconciler.reconcile(bot(), None, memory)
    kube.calls.clear()
    out = reconciler.reconcile(bot(), None, BotMemory())
    assert kube.writes("Pod") == [("create", "Pod", "wabot-sales")]
    assert out.result != "error"
    assert not any(e.type == "Warning" for e in out.events)
    kube.calls.clear()
    out = reconciler.reconcile(bot(), None, memory)
    assert kube.writes("Pod") == [] and out.result != "error"


def test_a_foreign_pod_holding_the_name_degrades_and_is_left_alone(
        kube: FakeKube, reconciler: Reconciler) -> None:
    kube.objects[("Pod", "wabot-sales")] = {
        "kind": "Pod", "metadata": {"name": "wabot-sales", "uid": "foreign"}, "spec": {}}
    out = reconciler.reconcile(bot(), None, BotMemory())
    assert ("delete", "Pod", "wabot-sales") not in kube.calls
    degraded = next(c for c in kube.status_patches[-1]["status"]["conditions"]
                    if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "PodNameTaken")
    assert any(e.reason == "PodNameTaken" for e in out.events)


def test_a_spec_the_model_refuses_is_reported_not_raised(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """E.g. a WhatsAppBot stored under an older, laxer CRD. The pass reports it in status and
    touches nothing else; the loop goes on."""
    out = reconciler.reconcile(bot({"pairing": {"method": "code"}}), None, BotMemory())
    assert [c[0] for c in kube.calls] == ["status"]
    status = kube.status_patches[-1]["status"]
    assert status["phase"] == "Failed"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "phoneNumber" in degraded["message"]
    assert any(e.type == "Warning" and e.reason == "InvalidSpec" for e in out.events)


def test_a_broken_template_is_reported_not_raised(tmp_path: Path) -> None:
    d = tmp_path / "t"
    shutil.copytree(REPO / "operator" / "bot-templates", d)
    (d / "pod.yaml").write_text((d / "pod.yaml").read_text().replace("${pvcName}", "${nope}"))
    kube = FakeKube()
    config = OperatorConfig(templates_dir=d, standalone=True)
    r = Reconciler(kube, config, TemplateStore(d, recheck_s=0))  # type: ignore[arg-type]
    r.reconcile(bot(), None, BotMemory())
    status = kube.status_patches[-1]["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (status["phase"], degraded["reason"]) == ("Failed", "TemplateError")
    assert "pod.yaml" in degraded["message"]
    assert kube.writes("Pod") == []


def test_api_errors_on_supporting_objects_hold_the_pod_back(
        kube: FakeKube, reconciler: Reconciler) -> None:
    kube.fail[("create", "ServiceAccount")] = KubeError(403, "Forbidden", "no")
    memory = BotMemory()
    out = reconciler.reconcile(bot(), None, memory)
    assert out.result == "error"
    assert kube.writes("Pod") == []  # admission would refuse a pod without its SA anyway
    assert memory.ensured_key is None  # the next pass tries again
    del kube.fail[("create", "ServiceAccount")]
    reconciler.reconcile(bot(), None, memory)
    assert ("create", "Pod", "wabot-sales") in kube.calls


def test_a_dying_bot_is_never_given_a_pod(kube: FakeKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(bot(deletionTimestamp="2026-01-01T00:00:00Z"), None, BotMemory())
    assert kube.calls == []


def test_finalize_retain_strips_only_our_owner_reference(
        kube: FakeKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(bot({"storage": {"retainPolicy": "Delete"}}), None, BotMemory())
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "cm"}
    kube.objects[("PersistentVolumeClaim", "wabot-sales-auth")]["metadata"][
        "ownerReferences"].append(other)
    events = reconciler.finalize(bot({"storage": {"retainPolicy": "Retain"}}))
    pvc = kube.read("PersistentVolumeClaim", NS, "wabot-sales-auth")
    assert pvc["metadata"]["ownerReferences"] == [other]
    assert [e.reason for e in events] == ["VolumeRetained"]


def test_finalize_delete_removes_the_volume(kube: FakeKube, reconciler: Reconciler) -> None:
    spec = {"storage": {"retainPolicy": "Delete"}}
    reconciler.reconcile(bot(spec), None, BotMemory())
    events = reconciler.finalize(bot(spec))
    assert ("PersistentVolumeClaim", "wabot-sales-auth") not in kube.objects
    assert [e.reason for e in events] == ["VolumeDeleted"]
    assert reconciler.finalize(bot(spec))  # idempotent: already gone is fine


def test_finalize_of_an_unreadable_spec_keeps_the_volume(
        kube: FakeKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(bot(), None, BotMemory())
    reconciler.finalize({**bot(), "spec": {}})
    assert ("PersistentVolumeClaim", "wabot-sales-auth") in kube.objects


def test_a_refused_pod_is_retried_after_the_error_delay_not_at_once(
        kube: FakeKube, reconciler: Reconciler) -> None:
    kube.fail[("create", "Pod")] = KubeError(422, "Invalid", "requests must be <= limits")
    out = reconciler.reconcile(bot(), None, BotMemory())
    assert out.result == "error"
    assert out.delay == RETRY_AFTER_ERROR < reconciler.config.reconcile_interval
    # An operator configured to pass more often than that retries at its own pace.
    quick = make_reconciler(kube, reconcile_interval=2)
    assert quick.reconcile(bot(), None, BotMemory()).delay == 2
    degraded = next(c for c in kube.status_patches[-1]["status"]["conditions"]
                    if c["type"] == "Degraded")
    assert (degraded["reason"], degraded["message"]) == ("PodRejected",
                                                         "requests must be <= limits")


def test_the_api_token_secret_is_made_once_and_never_rewritten(
        kube: FakeKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(bot(), None, BotMemory())
    secret = kube.objects[("Secret", "wabot-sales-api")]
    token = secret["data"]["token"]
    assert len(token) >= 40  # base64 of a 32-byte urlsafe token
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "WhatsAppBot"
    reconciler.reconcile(bot(), None, BotMemory())  # a fresh operator: checks everything again
    assert kube.objects[("Secret", "wabot-sales-api")]["data"]["token"] == token
    assert not [c for c in kube.calls if c[0] == "patch" and c[1] == "Secret"]
    # Damaged by hand: reported, not silently replaced (the operator cannot patch Secrets).
    kube.objects[("Secret", "wabot-sales-api")]["data"] = {}
    out = reconciler.reconcile(bot(), None, BotMemory())
    assert [e.reason for e in out.events if e.type == "Warning"] == ["ApiTokenMissing"]


def test_a_status_write_is_not_repeated_for_a_bot_the_watch_shows_from_before_it(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """kopf's finalizer PATCH and the operator's first status write race: the watch may then
    deliver a bot newer than the one the write was computed from, yet older than the write.
    The resourceVersion the API server answered the write with tells them apart."""
    answers = iter(["13", "14", "15"])

    def patch_bot_status(namespace: str, name: str,
                         patch: Mapping[str, Any]) -> dict[str, Any]:
        kube.calls.append(("status", "WhatsAppBot", name))
        kube.status_patches.append(copy.deepcopy(dict(patch)))
        return {"metadata": {"resourceVersion": next(answers)}}

    kube.patch_bot_status = patch_bot_status  # type: ignore[method-assign]
    now = [100.0]
    reconciler = make_reconciler(kube, clock=lambda: now[0])
    memory = BotMemory()
    reconciler.reconcile(bot(resourceVersion="10"), None, memory)
    now[0] += PENDING_SETTLE  # the new pod did not run in time: Pending is written
    reconciler.reconcile(bot(resourceVersion="10"), None, memory)
    assert len(kube.status_patches) == 1
    pod = kube.read("Pod", NS, "wabot-sales")
    # The bot with kopf's finalizer (resourceVersion 12), without the status written at 13.
    out = reconciler.reconcile(bot(resourceVersion="12", finalizers=["wabot.io/finalizer"]),
                               pod, memory)
    assert len(kube.status_patches) == 1 and out.events == []
    # Someone else changed the operator's status after the write: the newer bot wins.
    newer = bot(resourceVersion="20")
    newer["status"] = {"phase": "Failed"}
    reconciler.reconcile(newer, pod, memory)
    assert len(kube.status_patches) == 2
    assert kube.status_patches[-1]["status"]["phase"] == "Pending"


def test_the_pod_does_not_wait_for_the_workers_rbac_and_lease(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """A Role refused after the pod went out is reported and retried; the pod stays."""
    kube.fail[("create", "Role")] = KubeError(403, "Forbidden", "no")
    memory = BotMemory()
    out = reconciler.reconcile(bot(), None, memory)
    assert ("create", "Pod", "wabot-sales") in kube.calls
    assert out.result == "error" and memory.ensured_key is None
    degraded = next(c for c in kube.status_patches[-1]["status"]["conditions"]
                    if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")
    del kube.fail[("create", "Role")]
    pod = kube.read("Pod", NS, "wabot-sales")
    kube.calls.clear()
    reconciler.reconcile(bot(), pod, memory)
    assert ("create", "Role", "wabot-sales") in kube.calls
    assert ("create", "Pod", "wabot-sales") not in kube.calls
    assert memory.ensured_key is not None


def test_a_new_pod_scheduled_then_running_costs_one_status_write(kube: FakeKube) -> None:
    """Pending (Unschedulable while the volume binds, then scheduled) and then Connecting
    (Running), seconds after the first write: the conditions-only changes wait for the phase
    change (at most PENDING_SETTLE from the first of them), then all go in one write."""
    now = [100.0]
    r = make_reconciler(kube, clock=lambda: now[0])
    memory = BotMemory()
    r.reconcile(bot(), None, memory)
    now[0] += PENDING_SETTLE
    r.reconcile(bot(), None, memory)
    assert len(kube.status_patches) == 1
    pod = kube.read("Pod", NS, "wabot-sales")
    now[0] += 10.0  # a loaded cluster: long after the first write
    pod["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "pod has unbound immediate PersistentVolumeClaims"}]}
    out = r.reconcile(bot(), pod, memory)
    assert len(kube.status_patches) == 1
    assert out.delay is not None and out.delay <= PENDING_SETTLE
    now[0] += 1.5
    pod["spec"]["nodeName"] = "node-1"
    pod["status"] = {"phase": "Pending",
                     "conditions": [{"type": "PodScheduled", "status": "True"}]}
    out = r.reconcile(bot(), pod, memory)
    assert len(kube.status_patches) == 1
    assert out.delay is not None and out.delay <= PENDING_SETTLE - 1.5 + 1e-9
    run_on(pod, node=None)
    now[0] += 1.0
    r.reconcile(bot(), pod, memory)
    assert len(kube.status_patches) == 2
    status = kube.status_patches[-1]["status"]
    scheduled = next(c for c in status["conditions"] if c["type"] == "PodScheduled")
    assert (status["phase"], scheduled["status"]) == ("Connecting", "True")
    # A pod that stays Pending gets its conditions written once the moment has passed.
    other = FakeKube()
    r2 = make_reconciler(other, clock=lambda: now[0])
    memory2 = BotMemory()
    r2.reconcile(bot(), None, memory2)
    now[0] += PENDING_SETTLE
    r2.reconcile(bot(), None, memory2)
    stuck = other.read("Pod", NS, "wabot-sales")
    stuck["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/4 nodes are available"}]}
    r2.reconcile(bot(), stuck, memory2)
    assert len(other.status_patches) == 1
    now[0] += PENDING_SETTLE
    r2.reconcile(bot(), stuck, memory2)
    assert len(other.status_patches) == 2
    scheduled = next(c for c in other.status_patches[-1]["status"]["conditions"]
                     if c["type"] == "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")


def test_an_older_view_of_the_pod_from_the_watch_does_not_take_the_status_back(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """The watch lags: a pass meets 409, reads the pod Running (Connecting); the next pass
    gets the pod's ADDED event (Pending) from the watch. The newer view wins."""
    reconciler.reconcile(bot(), None, BotMemory())  # created by an earlier operator
    memory = BotMemory()
    pod = kube.objects[("Pod", "wabot-sales")]
    added = copy.deepcopy(pod)  # what the watch will deliver later: resourceVersion 1
    pod["metadata"]["resourceVersion"] = "5"
    run_on(pod, node=None)
    reconciler.reconcile(bot(resourceVersion="11"), None, memory)  # 409, read: Running
    assert kube.status_patches[-1]["status"]["phase"] == "Connecting"
    writes = len(kube.status_patches)
    seen = bot(resourceVersion="12")
    seen["status"] = kube.status_patches[-1]["status"]
    reconciler.reconcile(seen, added, memory)
    assert len(kube.status_patches) == writes


def test_a_pod_the_watch_showed_and_then_lost_is_made_again(
        kube: FakeKube, reconciler: Reconciler) -> None:
    """Trusting a created pod the watch has not shown yet must not hide a deletion."""
    memory = BotMemory()
    reconciler.reconcile(bot(), None, memory)
    pod = kube.read("Pod", NS, "wabot-sales")
    reconciler.reconcile(bot(), pod, memory)  # the watch shows it
    del kube.objects[("Pod", "wabot-sales")]  # deleted; the watch drops it
    kube.calls.clear()
    reconciler.reconcile(bot(), None, memory)
    assert kube.writes("Pod") == [("create", "Pod", "wabot-sales")]


def test_a_created_pod_the_watch_never_shows_is_checked_again_in_the_end() -> None:
    now = [100.0]
    kube = FakeKube()
    r = make_reconciler(kube, clock=lambda: now[0])
    memory = BotMemory()
    r.reconcile(bot(), None, memory)
    del kube.objects[("Pod", "wabot-sales")]  # gone before the watch ever showed it
    kube.calls.clear()
    r.reconcile(bot(), None, memory)
    assert kube.writes("Pod") == []
    now[0] += 31.0
    r.reconcile(bot(), None, memory)
    assert kube.writes("Pod") == [("create", "Pod", "wabot-sales")]


def test_a_stuck_pod_is_reported_at_once(kube: FakeKube, reconciler: Reconciler) -> None:
    """Degraded (an image that cannot be pulled) is never held back while Pending."""
    memory = BotMemory()
    reconciler.reconcile(bot(), None, memory)
    pod = kube.read("Pod", NS, "wabot-sales")
    pod["status"] = {"phase": "Pending", "containerStatuses": [
        {"restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                  "message": "no such image"}}}]}
    reconciler.reconcile(bot(), pod, memory)
    assert len(kube.status_patches) == 1  # not held for the new pod's moment either
    degraded = next(c for c in kube.status_patches[-1]["status"]["conditions"]
                    if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ImagePullBackOff")


def test_a_bot_the_policy_refuses_gets_nothing_and_a_clear_failure(kube: FakeKube) -> None:
    r = make_reconciler(kube)
    outcome = r.reconcile(bot({"image": "evil.example/miner:1"}), None, BotMemory())
    assert kube.writes() == [("status", "WhatsAppBot", "sales")]  # no PVC, RBAC, Lease, pod
    status = kube.status_patches[-1]["status"]
    assert status["phase"] == "Failed"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ImageNotAllowed"
    assert "spec.image" in degraded["message"]
    assert [(e.type, e.reason) for e in outcome.events][-1] == ("Warning", "ImageNotAllowed")


def test_an_admins_change_stops_a_running_bot_and_undoing_it_heals(kube: FakeKube) -> None:
    """The namespace's tenants are re-read (at most FACTS_TTL old): a bot whose tenant the
    admin takes away loses its pod, and gets one again when the admin gives it back."""
    now = [100.0]
    r = make_reconciler(kube, clock=lambda: now[0])
    memory = BotMemory()
    r.reconcile(bot(), None, memory)
    pod = run_on(kube.read("Pod", NS, "wabot-sales"))
    r.reconcile(bot(), pod, memory)
    kube.tenants = "globex"
    now[0] += 31
    r.reconcile(bot(), pod, memory)
    assert ("Pod", "wabot-sales") not in kube.objects
    degraded = next(c for c in kube.status_patches[-1]["status"]["conditions"]
                    if c["type"] == "Degraded")
    assert degraded["reason"] == "TenantNotAllowed"
    kube.tenants = "acme,globex"
    now[0] += 31
    r.reconcile(bot(), None, memory)
    assert ("Pod", "wabot-sales") in kube.objects
