"""A mass restart is paced fleet-wide: bots that ran before get their pods back at the
configured rate, in order, while a new bot's first pod is never held back."""

from __future__ import annotations

from typing import Any

from wabot_operator.reconcile import BotMemory, Reconciler

from tests.operator.test_reconcile import NS, FakeKube, bot, make_reconciler


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
    # Each waiting bot is told when its slot comes: 0.2 s apart at 5/s.
    assert [round(delays[f"b{i}"] or 0, 3) for i in range(1, 10)] == [
        round(0.2 * i, 3) for i in range(1, 10)]
    statuses = [p["status"] for p in kube.status_patches]
    assert all(s.get("phase") != "Failed" for s in statuses)
    # Passes come back when told: one more pod per slot, never two in 1 s beyond the rate.
    for step in range(1, 10):
        clock.now += 0.2
        for b in bots[step:]:
            rec.reconcile(b, None, memories[b["metadata"]["name"]])
    assert pod_creates(kube) == [f"wabot-b{i}" for i in range(10)]


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


def test_a_bot_that_ran_before_reads_its_objects_first_one_request_each() -> None:
    """After an operator restart (no memory) a running fleet is re-checked: a GET per object,
    not create -> 409 -> GET (twice the requests for every bot)."""
    kube, clock = FakeKube(), Clock()
    rec = reconciler(kube, clock, rate=5)
    fresh = bot(name="s", uid="uid-s")
    rec.reconcile(fresh, None, BotMemory())
    pod = kube.read("Pod", NS, "wabot-s")
    known = ran_before("s")
    kube.calls.clear()
    reads: list[str] = []
    read = kube.read

    def counted(kind: str, namespace: str, name: str) -> dict[str, Any]:
        reads.append(kind)
        return read(kind, namespace, name)

    kube.read = counted  # type: ignore[method-assign]
    rec.reconcile(known, pod, BotMemory())  # a new operator process: empty memory
    assert not [c for c in kube.calls if c[0] == "create"], kube.calls
    assert sorted(reads) == sorted(["PersistentVolumeClaim", "ServiceAccount", "Secret", "Role",
                                    "RoleBinding", "Lease"])
