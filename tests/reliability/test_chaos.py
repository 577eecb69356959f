"""1. Chaos on the real control plane with simulated nodes.

Rounds of faults in a seeded random order — the operator SIGKILLed right after spec changes
(mid-reconcile) and restarted, the API server restarted (only on a control plane this session
started), pods deleted, pod-affecting specs changed (resources), bots suspended and resumed —
while a recorder sees every pod and Lease event and a kubelet stand-in runs the worker's real
Lease elector for every Running pod (see kubeworld.py: kwok runs no containers). Then: never
two live pods or two Lease holders for one bot, no orphans, no duplicates, every bot converged.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from wabot_operator.specs.bot import BotRef, RenderDefaults
from wabot_operator.specs.children import render_children
from wabot_operator.templates import TemplateStore

from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.reliability import figures, sizes
from tests.reliability.kubeworld import KubeletStandIn, NamespaceRecorder
from wabot import naming
from wabot.spec import API_GROUP, API_VERSION, PLURAL, WhatsAppBotSpec

SECTION = "chaos"
REPO = Path(__file__).resolve().parents[2]
WORKER_IMAGE = "registry.invalid/wabot-worker:test"  # what OperatorProcess configures
CPU_CHOICES = ("300m", "400m", "500m", "600m", "700m")
ACTIONS = ("kill_operator", "restart_apiserver", "delete_pods", "change_spec",
           "suspend_resume")
WEIGHTS = (2, 1, 3, 3, 2)

pytestmark = [pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.timeout(600 + sizes.CHAOS_ROUNDS * 20 + sizes.CHAOS_BOTS * 10)]


def desired_hash(store: TemplateStore, bot: dict[str, Any]) -> str:
    meta = bot["metadata"]
    spec = WhatsAppBotSpec.model_validate(bot["spec"])
    children = render_children(BotRef(meta["name"], meta["namespace"], meta["uid"]), spec,
                               RenderDefaults(worker_image=WORKER_IMAGE), store.get())
    return children.pod_hash


def bots_by_name(cluster: Cluster) -> dict[str, dict[str, Any]]:
    items = cluster.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, cluster.ns,
                                                         PLURAL, _request_timeout=15)["items"]
    return {b["metadata"]["name"]: b for b in items}


def convergence_problems(cluster: Cluster, store: TemplateStore,
                         names: list[str]) -> list[str]:
    """Why each bot is not converged yet (empty: all are)."""
    bots = bots_by_name(cluster)
    pods: dict[str, list[client.V1Pod]] = {}
    for pod in cluster.core.list_namespaced_pod(cluster.ns, label_selector=naming.LABEL_BOT,
                                                _request_timeout=15).items:
        pods.setdefault(pod.metadata.labels[naming.LABEL_BOT], []).append(pod)
    problems = []
    for name in names:
        bot = bots.get(name)
        if bot is None:
            problems.append(f"{name}: bot missing")
            continue
        generation = bot["metadata"].get("generation")
        observed = (bot.get("status") or {}).get("observedGeneration")
        if observed != generation:
            problems.append(f"{name}: observedGeneration {observed} != {generation}")
        mine = pods.get(name, [])
        if bot["spec"].get("suspend"):
            if mine:
                problems.append(f"{name}: suspended but has {len(mine)} pod(s)")
            continue
        if len(mine) != 1:
            problems.append(f"{name}: {len(mine)} pods")
            continue
        pod = mine[0]
        if pod.metadata.deletion_timestamp or (pod.status and pod.status.phase) != "Running":
            problems.append(f"{name}: pod {pod.status.phase if pod.status else None}, "
                            f"terminating={pod.metadata.deletion_timestamp is not None}")
            continue
        have = (pod.metadata.annotations or {}).get(naming.ANNOTATION_POD_HASH)
        want = desired_hash(store, bot)
        if have != want:
            problems.append(f"{name}: pod hash {have} != {want}")
    return problems


def children_audit(cluster: Cluster) -> tuple[list[str], list[str]]:
    """(orphans, duplicates) among everything labelled as a bot's in the namespace."""
    bots = bots_by_name(cluster)
    sel = naming.LABEL_BOT
    kinds: dict[str, list[Any]] = {
        "Pod": cluster.core.list_namespaced_pod(cluster.ns, label_selector=sel).items,
        "PersistentVolumeClaim": cluster.core.list_namespaced_persistent_volume_claim(
            cluster.ns, label_selector=sel).items,
        "ServiceAccount": cluster.core.list_namespaced_service_account(
            cluster.ns, label_selector=sel).items,
        "Role": cluster.rbac.list_namespaced_role(cluster.ns, label_selector=sel).items,
        "RoleBinding": cluster.rbac.list_namespaced_role_binding(
            cluster.ns, label_selector=sel).items,
        "Lease": cluster.coord.list_namespaced_lease(cluster.ns, label_selector=sel).items,
        "Secret": cluster.core.list_namespaced_secret(cluster.ns, label_selector=sel).items,
    }
    orphans, duplicates = [], []
    for kind, items in kinds.items():
        per_bot = Counter(o.metadata.labels[sel] for o in items)
        for bot, n in per_bot.items():
            if n > 1:
                duplicates.append(f"{kind} x{n} for {bot}")
        for o in items:
            bot = bots.get(o.metadata.labels[sel])
            owners = {r.uid for r in (o.metadata.owner_references or [])}
            if bot is None or bot["metadata"]["uid"] not in owners:
                orphans.append(f"{kind} {o.metadata.name}")
            bot_name = o.metadata.labels[sel]
            want = (naming.pvc_name(bot_name) if kind == "PersistentVolumeClaim"
                    else naming.api_secret_name(bot_name) if kind == "Secret"
                    else naming.child_name(bot_name))
            if o.metadata.name != want:
                duplicates.append(f"{kind} {o.metadata.name} (expected name {want})")
    for name, bot in bots.items():
        for kind in ("PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding", "Lease",
                     "Secret"):
            if not any(o.metadata.labels[sel] == name for o in kinds[kind]):
                orphans.append(f"{name}: no {kind}")  # a missing child: not converged
        del bot
    return orphans, duplicates


class Chaos:
    def __init__(self, kube: Kube, cluster: Cluster,
                 operator_factory: Callable[..., OperatorProcess], rng: random.Random,
                 names: list[str]) -> None:
        self.kube, self.cluster, self.rng, self.names = kube, cluster, rng, names
        self.factory = operator_factory
        self.op: OperatorProcess = operator_factory().start()
        self.done: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.unexpected_exits = 0
        self.pods_deleted = 0
        self.spec_changes = 0
        self.suspends = 0
        self.resumes = 0
        self.apiserver_downtime = 0.0
        self.kills_mid_work = 0  # kills while a changed bot was not converged yet
        self.store = TemplateStore(REPO / "operator" / "bot-templates")

    def some_bots(self, most: int = 3) -> list[str]:
        return self.rng.sample(self.names, self.rng.randint(1, min(most, len(self.names))))

    def retry(self, call: Callable[[], Any]) -> Any:
        """An admin call that may meet the API server mid-restart."""
        for attempt in range(60):
            try:
                return call()
            except ApiException as e:
                if e.status in (404, 409, 422):
                    raise
            except Exception:
                pass
            time.sleep(0.5 + 0.1 * attempt)
        raise AssertionError("the API server did not come back")

    def change_spec(self) -> list[str]:
        changed = []
        for name in self.some_bots():
            cpu = self.rng.choice(CPU_CHOICES)
            self.retry(lambda name=name, cpu=cpu: self.cluster.patch_bot(
                name, {"resources": {"limits": {"cpu": cpu, "memory": "256Mi"}}}))
            self.spec_changes += 1
            changed.append(name)
        return changed

    def delete_pods(self) -> None:
        for name in self.some_bots():
            with contextlib.suppress(ApiException):  # 404: suspended or being replaced
                self.retry(lambda name=name: self.cluster.core.delete_namespaced_pod(
                    naming.child_name(name), self.cluster.ns))
                self.pods_deleted += 1

    def suspend_resume(self) -> None:
        for name in self.some_bots(2):
            suspended = bool(self.retry(lambda name=name: self.cluster.bot(name))["spec"]
                             .get("suspend"))
            self.retry(lambda name=name, s=suspended: self.cluster.patch_bot(
                name, {"suspend": not s}))
            if suspended:
                self.resumes += 1
            else:
                self.suspends += 1

    def kill_operator(self) -> None:
        # Give it work (bots whose pods must be replaced, the old one gone first), then kill
        # it in the middle of that work.
        changed = self.change_spec()
        time.sleep(self.rng.uniform(0.0, 1.5))
        self.ensure_operator_alive()
        try:
            unfinished = convergence_problems(self.cluster, self.store, changed)
        except Exception:  # the API server may be restarting: then it cannot tell
            unfinished = []
        self.op.kill()
        self.kills_mid_work += bool(unfinished)
        time.sleep(self.rng.uniform(0.0, 2.0))
        self.op = self.factory().start()

    def restart_apiserver(self) -> bool:
        if self.kube.local is None:
            print("restart_apiserver skipped: not a control plane this session started")
            return False
        started = time.monotonic()
        self.kube.local.restart_apiserver()
        self.apiserver_downtime += time.monotonic() - started
        return True

    def ensure_operator_alive(self) -> None:
        assert self.op.proc is not None
        if self.op.proc.poll() is not None:
            self.unexpected_exits += 1
            print(f"operator exited by itself ({self.op.proc.returncode}):\n{self.op.log()}")
            self.op = self.factory().start()

    def run(self, action: str) -> None:
        performed = getattr(self, action)()
        if performed is False:
            self.skipped[action] += 1
        else:
            self.done[action] += 1


def test_chaos_rounds_keep_one_pod_and_one_lease_holder_per_bot_and_converge(
        kube: Kube, cluster: Cluster, operator_factory: Callable[..., OperatorProcess],
        tmp_path: Path) -> None:
    figures.section(SECTION, "1. Chaos on the control plane (simulated kwok nodes)")
    rounds, n_bots, seed = sizes.CHAOS_ROUNDS, sizes.CHAOS_BOTS, sizes.SEED
    rng = random.Random(seed)
    figures.record(SECTION, "size", f"{rounds} rounds x {n_bots} bots, seed {seed}")
    figures.record(SECTION, "control plane", "local, started by this session (API-server "
                   "restarts included)" if kube.local is not None else
                   "$KUBECONFIG cluster: API-server restarts SKIPPED (never restart a shared "
                   "API server)")
    figures.note(SECTION, "kwok runs no containers: a kubelet stand-in runs the worker's real "
                 "Lease elector (botworker.adapters.lease_elector.LeaseElector, "
                 "identity = pod name, the bot's own "
                 "ServiceAccount token) for every Running pod and stops it (with release) when "
                 "the pod terminates, before it starts the next pod's")
    store = TemplateStore(REPO / "operator" / "bot-templates")
    names = [f"c{i:03d}" for i in range(n_bots)]
    admin = cluster.api_client
    standin = KubeletStandIn(admin, cluster.ns).start()
    recorder_client = kube.api_client()
    assert isinstance(recorder_client, client.ApiClient)
    with NamespaceRecorder(recorder_client, cluster.ns, on_pod=standin.on_pod) as rec:
        chaos = Chaos(kube, cluster, operator_factory, rng, names)
        t0 = time.monotonic()
        for i, name in enumerate(names):
            cluster.create_bot(name, {"serverName": f"tenant-{i % 3}",
                                      "storage": {"retainPolicy": "Delete"}})
        eventually(lambda: not convergence_problems(cluster, store, names),
                   timeout=120 + 4 * n_bots, interval=1.0, what="first convergence")
        figures.record(SECTION, "first convergence of all bots", f"{time.monotonic() - t0:.1f} s")

        # Every action at least once (so the API-server restart is always in a local run),
        # then a seeded random mix.
        plan = list(ACTIONS)
        rng.shuffle(plan)
        plan += rng.choices(ACTIONS, weights=WEIGHTS, k=max(0, rounds - len(plan)))
        plan = plan[:rounds]
        print(f"chaos plan (seed {seed}): {plan}")
        t1 = time.monotonic()
        for action in plan:
            chaos.run(action)
            time.sleep(rng.uniform(0.2, 2.0))
        chaos.ensure_operator_alive()
        chaos_s = time.monotonic() - t1
        t2 = time.monotonic()
        last: list[str] = []

        def converged() -> bool:
            nonlocal last
            last = convergence_problems(cluster, store, names)
            return not last

        try:
            eventually(converged, timeout=180 + 3 * n_bots, interval=1.0, what="convergence")
        finally:
            if last:
                print("not converged:", last)
        converge_s = time.monotonic() - t2

        # The stand-in's electors settle too: every running bot's pod holds its Lease.
        def lease_settled() -> bool:
            bots = bots_by_name(cluster)
            holders = standin.holders_now()
            for name in names:
                if bots[name]["spec"].get("suspend"):
                    continue
                pod = cluster.pod(naming.child_name(name))
                if pod is None or holders.get(name) != {pod.metadata.uid}:
                    return False
            return True

        eventually(lease_settled, timeout=90, interval=1.0, what="every Lease held by its pod")
        time.sleep(1.0)  # the last events reach the recorder
    standin.stop_all()

    rec.dump(tmp_path / "chaos-events.jsonl")
    print(f"every recorded event: {tmp_path / 'chaos-events.jsonl'}")
    overlaps = rec.pod_overlaps()
    stray, forced = rec.forced_deletes()
    takeovers = rec.lease_takeovers_without_expiry()
    unfixed = rec.unfixed_pod_names()
    orphans, duplicates = children_audit(cluster)
    bots = bots_by_name(cluster)
    suspended = sum(1 for b in bots.values() if b["spec"].get("suspend"))

    done = ", ".join(f"{a} {chaos.done[a]}" for a in ACTIONS if chaos.done[a])
    figures.record(SECTION, "actions", done)
    if chaos.skipped:
        figures.record(SECTION, "actions skipped",
                       ", ".join(f"{a} {n}" for a, n in chaos.skipped.items()))
    figures.record(SECTION, "faults", f"{chaos.pods_deleted} pods deleted, "
                   f"{chaos.spec_changes} resource changes, {chaos.suspends} suspends, "
                   f"{chaos.resumes} resumes, {chaos.done['kill_operator']} operator SIGKILLs, "
                   f"{chaos.done['restart_apiserver']} API-server restarts "
                   f"({chaos.apiserver_downtime:.1f} s in restarts)")
    figures.record(SECTION, "operator SIGKILLs that landed mid-reconcile",
                   f"{chaos.kills_mid_work}/{chaos.done['kill_operator']} (a changed bot's pod "
                   "not yet replaced or its status not yet written at the kill)")
    figures.record(SECTION, "chaos phase / final convergence",
                   f"{chaos_s:.0f} s / {converge_s:.1f} s")
    figures.note(SECTION, "after an API-server restart the operator acts within a second, but "
                 "the control plane's kube-scheduler can take up to ~50 s to reconnect and "
                 "schedule new pods (measured): that is most of a long final convergence")
    figures.record(SECTION, "pod events recorded", len(rec.pods))
    figures.record(SECTION, "Lease events recorded", len(rec.leases))
    figures.record(SECTION, "pods created (distinct uids)", len({e.uid for e in rec.pods}))
    figures.record(SECTION, "watch resumes after errors / relists after 410 Gone",
                   f"{rec.reconnects} / {rec.lossless_relists + sum(rec.gaps.values())} "
                   f"({rec.gaps['pods']} pod and {rec.gaps['leases']} Lease relists found "
                   "changes the restarted API server could not replay; checked across them)")
    figures.record(SECTION, "pods not named wabot-<bot> (the name that makes a second pod "
                   "impossible)", len(unfixed))
    figures.record(SECTION, "moments with 2 live (non-terminating) pods for one bot",
                   overlaps["moments_two_live"])
    figures.record(SECTION, "moments with 2 pods (terminating included) for one bot",
                   overlaps["moments_two_existing"])
    figures.record(SECTION, "forced (grace 0) deletes of scheduled pods", f"{len(forced)} "
                   f"(+{len(stray)} stray repeats of kwok's by-name delete hitting the next pod "
                   "of the same name: the simulator's, see kubeworld.forced_deletes)")
    figures.record(SECTION, "unscheduled pods deleted at once by the API server",
                   rec.immediate_deletes_unscheduled())
    figures.record(SECTION, "Lease electors started / stopped (stand-in)",
                   f"{standin.started} / {standin.stopped}")
    figures.record(SECTION, "Lease acquisitions / losses (fenced)",
                   f"{standin.acquisitions} / {standin.losses}")
    figures.record(SECTION, "moments with 2 Lease holders for one bot",
                   len(standin.violations) + len(takeovers))
    figures.record(SECTION, "orphans / duplicates", f"{len(orphans)} / {len(duplicates)}")
    figures.record(SECTION, "bots converged", f"{len(names)}/{len(names)} "
                   f"({suspended} suspended, no pod; observedGeneration == generation)")
    figures.record(SECTION, "operator exits not caused by the test", chaos.unexpected_exits)

    assert unfixed == []
    assert overlaps["moments_two_live"] == 0, overlaps
    assert overlaps["moments_two_existing"] == 0, overlaps
    assert forced == [], [[e for e in rec.pods if e.uid == f.uid] for f in forced]
    assert standin.violations == [], standin.violations
    assert takeovers == [], takeovers
    assert orphans == [] and duplicates == [], (orphans, duplicates)
    assert chaos.unexpected_exits == 0
    assert chaos.op.healthy()
    assert all(chaos.done[a] >= 1 for a in ACTIONS if a != "restart_apiserver")
    if kube.local is not None:
        assert chaos.done["restart_apiserver"] >= 1
    assert standin.acquisitions >= n_bots
