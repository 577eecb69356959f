"""A mass restart is paced fleet-wide: bots that ran before get their pods back at the
configured rate, in order, while a new bot's first pod is never held back."""

from __future__ import annotations

import math
from typing import Any

from wabot_operator.memory import BotMemory
from wabot_operator.reconcile import Reconciler
from wabot_operator.statuswrite import PENDING_WRITE_PACE

from tests.operator.test_reconcile import NS, FakeKube, bot, make_reconciler, run_on


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reconciler(kube: FakeKube, clock: Clock, rate: float) -> Reconciler:
    return make_reconciler(kube, clock, pod_restarts_per_second=rate)


def ran_before(name: str) -> dict[str, Any]:
    """A bot that had a pod: its status has a phase; its pod is gone."""
    b = bot(name=name, uid=f"uid-{name}")
    b["status"] = {"phase": "Connected", "podName": f"wabot-{name}"}
    return b


def pod_creates(kube: FakeKube) -> list[str]:
    return [name for op, kind, name in kube.calls if op == "create" and kind == "Pod"]


def test_restarts_go_out_at_the_configured_rate_and_in_order() -> None:
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    bots = [ran_before(f"b{i}") for i in range(10)]
    memories = {b["metadata"]["name"]: BotMemory() for b in bots}
    delays = {}
    for b in bots:  # every pod deleted at once: every bot's pass runs at the same moment
        out = rec.reconcile(b, None, memories[b["metadata"]["name"]])
        delays[b["metadata"]["name"]] = out.delay
    assert pod_creates(kube) == ["wabot-b0"]
    # Each waiting bot comes back by its slot (0.2 s apart at 5/s), or sooner for its
    # status write (those are paced too, at PENDING_WRITE_PACE times the pace: next test).
    assert all(0 < (delays[f"b{i}"] or 0) <= 0.2 * i + 1e-9 for i in range(1, 10))
    statuses = [p["status"] for p in kube.status_patches]
    assert all(s.get("phase") != "Failed" for s in statuses)
    # Passes come back when told: one more pod per slot, never two in 1 s beyond the rate.
    for step in range(1, 10):
        clock.now += 0.2
        for b in bots[step:]:
            rec.reconcile(b, None, memories[b["metadata"]["name"]])
    assert pod_creates(kube) == [f"wabot-b{i}" for i in range(10)]


def test_when_every_pod_goes_the_pending_writes_are_paced_too() -> None:
    """Every pod deleted at once: each bot's status goes to Pending, but those writes take
    fleet-wide slots at PENDING_WRITE_PACE times the restart pace, so a mass restart does not
    write 1,000 statuses in one second; each bot's Pending shows before its own pod comes
    back."""
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    bots = [ran_before(f"p{i}") for i in range(20)]
    memories = {b["metadata"]["name"]: BotMemory() for b in bots}
    written_at: dict[str, float] = {}
    created_at: dict[str, float] = {}
    for _ in range(41):  # 4 s in steps of 0.1 s, every bot passing each step
        for b in bots:
            name = b["metadata"]["name"]
            before = len(kube.status_patches)
            rec.reconcile(b, None if name not in created_at else kube.read(
                "Pod", NS, f"wabot-{name}"), memories[name])
            if len(kube.status_patches) > before and name not in written_at:
                assert kube.status_patches[-1]["status"]["phase"] == "Pending"
                written_at[name] = clock.now
            if f"wabot-{name}" in pod_creates(kube) and name not in created_at:
                created_at[name] = clock.now
        clock.now += 0.1
    times = sorted(written_at.values())
    per_second = math.ceil(PENDING_WRITE_PACE * 5)  # slots 1/7.5 s apart: <= 8 in any 1 s
    for i in range(len(times)):
        assert sum(1 for t in times if times[i] <= t < times[i] + 1.0 - 1e-9) <= per_second
    waited = [n for n in created_at if created_at[n] > 1000.0 + 1e-9]
    assert waited and all(written_at[n] <= created_at[n] for n in waited)


def test_a_bot_deleted_while_waiting_gives_its_slots_back() -> None:
    """Deleted mid-restart: its restart and status-write slots are dropped, so the
    wabot_operator_pod_restarts_waiting gauge does not count it forever."""
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    bots = [ran_before(f"d{i}") for i in range(4)]
    for b in bots:
        rec.reconcile(b, None, BotMemory())
    assert rec.restarts.waiting() == 3  # d0 got its pod at once
    assert rec.pending_writes.waiting() > 0
    for b in bots[1:]:
        rec.finalize(b)
    assert rec.restarts.waiting() == 0 and rec.pending_writes.waiting() == 0


def test_a_new_bots_first_pod_is_not_paced() -> None:
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=1)
    rec.reconcile(ran_before("old1"), None, BotMemory())
    rec.reconcile(ran_before("old2"), None, BotMemory())  # waits 1 s
    out = rec.reconcile(bot(name="fresh", uid="uid-fresh"), None, BotMemory())
    assert "wabot-fresh" in pod_creates(kube) and "wabot-old2" not in pod_creates(kube)
    assert out.result != "error"


def test_a_bot_that_no_longer_needs_a_pod_gives_its_slot_up() -> None:
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=1)
    rec.reconcile(ran_before("a"), None, BotMemory())
    rec.reconcile(ran_before("b"), None, BotMemory())
    assert rec.restarts.waiting() == 1
    suspended = ran_before("b")
    suspended["spec"]["suspend"] = True
    rec.reconcile(suspended, None, BotMemory())
    assert rec.restarts.waiting() == 0


def test_rate_zero_turns_pacing_off() -> None:
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=0)
    for i in range(20):
        rec.reconcile(ran_before(f"b{i}"), None, BotMemory())
    assert len(pod_creates(kube)) == 20
    assert NS  # the fake's namespace, shared with test_reconcile


def test_an_image_roll_out_replaces_pods_at_the_rate_and_each_create_follows_its_delete(
        ) -> None:
    """Changing every bot's image at once must not take every bot down at once: the delete
    waits for the slot, and the create after it does not queue a second time."""
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=2)
    names = [f"r{i}" for i in range(4)]
    memories = {n: BotMemory() for n in names}
    for n in names:  # running bots with pods of img:1
        b = ran_before(n)
        b["status"] = {}
        rec.reconcile(b, None, memories[n])
    pods = {n: kube.read("Pod", NS, f"wabot-{n}") for n in names}
    kube.calls.clear()
    rolled = {}
    for n in names:
        b = ran_before(n)
        b["spec"]["image"] = "img:2"
        b["metadata"]["generation"] = 2
        rolled[n] = b
        rec.reconcile(b, pods[n], memories[n])
    deletes = [name for op, kind, name in kube.calls if op == "delete" and kind == "Pod"]
    assert deletes == ["wabot-r0"]
    # r0's pod is gone: its create goes out at once, on the slot of its delete.
    kube.calls.clear()
    rec.reconcile(rolled["r0"], None, memories["r0"])
    assert pod_creates(kube) == ["wabot-r0"]
    # Half a second later (2/s) the next bot's delete goes out, and so on.
    clock.now += 0.5
    kube.calls.clear()
    for n in names[1:]:
        rec.reconcile(rolled[n], pods[n], memories[n])
    assert [name for op, kind, name in kube.calls if op == "delete"] == ["wabot-r1"]


def test_a_restarted_operator_checks_a_running_fleet_with_one_listing() -> None:
    """After an operator restart (no memory) every bot that ran before is re-checked against
    one LIST per kind for the whole namespace, not a GET per object (6,000 at once for 1,000
    bots); its pod, when it must be made again, gets its API-token Secret read first."""
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    names = ["s1", "s2", "s3"]
    pods = {}
    for n in names:
        rec.reconcile(bot(name=n, uid=f"uid-{n}"), None, BotMemory())
        pods[n] = kube.read("Pod", NS, f"wabot-{n}")
    del kube.objects[("Pod", "wabot-s3")]  # s3's pod went away while no operator ran
    restarted = reconciler(kube, clock, rate=5)
    kube.calls.clear()
    for n in names:
        restarted.reconcile(ran_before(n), pods.get(n) if n != "s3" else None, BotMemory())
    lists = sorted(kind for op, kind, _ in kube.calls if op == "list")
    assert lists == sorted(["PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding",
                            "Lease"])  # once for all three bots
    assert [(op, kind, name) for op, kind, name in kube.calls if op in ("read", "create")] == [
        ("read", "Secret", "wabot-s3-api"), ("create", "Pod", "wabot-s3")]


def test_a_resync_finds_a_deleted_role_and_a_changed_binding_through_the_listing() -> None:
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    memories = {n: BotMemory() for n in ("a", "b")}
    for n, memory in memories.items():
        rec.reconcile(bot(name=n, uid=f"uid-{n}"), None, memory)
    pods = {n: kube.read("Pod", NS, f"wabot-{n}") for n in memories}
    del kube.objects[("Role", "wabot-a")]
    kube.objects[("RoleBinding", "wabot-b")]["subjects"] = [{"kind": "User", "name": "eve"}]
    kube.calls.clear()
    clock.now += 299.0  # before the resync interval (300 s): nothing is read
    for n, memory in memories.items():
        rec.reconcile(ran_before(n), pods[n], memory)
    assert kube.calls == [] or all(op == "status" for op, _, _ in kube.calls)
    clock.now += 1.0
    for n, memory in memories.items():
        rec.reconcile(ran_before(n), pods[n], memory)
    assert sorted(kind for op, kind, _ in kube.calls if op == "list") == sorted(
        ["PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "Lease"])
    assert ("create", "Role", "wabot-a") in kube.calls
    assert ("patch", "RoleBinding", "wabot-b") in kube.calls
    assert kube.objects[("RoleBinding", "wabot-b")]["subjects"][0]["kind"] == "ServiceAccount"
    assert not [c for c in kube.calls if c[0] == "read"]


def test_a_patch_from_an_out_of_date_listing_is_retried_on_the_object_itself() -> None:
    """A 409 on a patch built from the listing (someone changed the object since): reported,
    and the next pass reads the object itself instead of the same stale listing."""
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    memory = BotMemory()
    rec.reconcile(bot(name="a", uid="uid-a"), None, memory)
    pod = kube.read("Pod", NS, "wabot-a")
    role = kube.objects[("Role", "wabot-a")]
    role["metadata"]["ownerReferences"] = []  # an admin stripped the owner reference
    clock.now += 300.0
    rec.reconcile(ran_before("a"), pod, memory)  # lists, patches: fine
    role["metadata"]["ownerReferences"] = []
    role["metadata"]["resourceVersion"] = "7"  # changed again after the listing
    clock.now += 300.0
    listed = kube.list_all

    def stale(kind: str, namespace: str, selector: str) -> Any:
        """The listing as the API server's cache had it before that change."""
        for obj in listed(kind, namespace, selector):
            if kind == "Role":
                obj["metadata"]["resourceVersion"] = "6"
            yield obj

    kube.list_all = stale  # type: ignore[method-assign]
    out = rec.reconcile(ran_before("a"), pod, memory)
    assert out.result == "error" and memory.direct
    kube.calls.clear()
    rec.reconcile(ran_before("a"), pod, memory)
    assert ("read", "Role", "wabot-a") in kube.calls
    assert not [c for c in kube.calls if c[0] == "list"]
    owners = kube.objects[("Role", "wabot-a")]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == ["uid-a"]


def test_a_status_write_that_cannot_wait_makes_the_next_pending_write_wait() -> None:
    """New pods report Running in clumps during a mass restart: their Connecting writes go out
    at once, and the paced Pending writes of the bots still waiting make room for them."""

    def pending_written_at_once(after_connecting: bool) -> bool:
        kube, clock = FakeKube(), Clock()
        rec = reconciler(kube, clock, rate=2)  # Pending writes at 3/s
        up, memory = ran_before("up"), BotMemory()
        rec.reconcile(up, None, memory)  # the first restart: its new pod at once
        if after_connecting:
            up["status"] = {"phase": "Pending", "podName": "wabot-up"}
            rec.reconcile(up, run_on(kube.read("Pod", NS, "wabot-up")), memory)
            assert kube.status_patches[-1]["status"]["phase"] == "Connecting"
        before = len(kube.status_patches)
        out = rec.reconcile(ran_before("down"), None, BotMemory())  # waits for its restart
        if len(kube.status_patches) > before:
            assert kube.status_patches[-1]["status"]["phase"] == "Pending"
            return True
        assert out.delay is not None and 0 < out.delay <= 1 / 3 + 1e-6
        return False

    assert pending_written_at_once(after_connecting=False)
    assert not pending_written_at_once(after_connecting=True)
