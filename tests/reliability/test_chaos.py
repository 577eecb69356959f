"""1. Chaos on the real control plane with simulated nodes.

Rounds of faults in a seeded random order — the operator SIGKILLed right after spec changes
(mid-reconcile) and restarted, the API server restarted (only on a control plane this session
started), pods deleted, pod-affecting specs changed (resources), bots suspended and resumed —
while a recorder sees every pod and Lease event and a kubelet stand-in runs the worker's real
Lease elector for every Running pod on kwok's nodes (see kubeworld.py: kwok runs no
containers). A seeded few of the bots are placed on the real node (realnode_share.py): there the
real worker image runs, holds and releases the Lease itself, and the chaos hits it as it hits
the others; their live workers are counted from the node's processes. Then: never two live
pods, worker containers or Lease holders for one bot, no orphans, no duplicates, every bot
converged.
"""

from __future__ import annotations

import contextlib
import functools
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

from devcluster.node import RealNode
from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.realnode.plugin import OPERATOR_ENV, WORKER_IMAGE
from tests.reliability import figures, realnode_share, sizes
from tests.reliability.kubeworld import KubeletStandIn, NamespaceRecorder
from wabot import naming
from wabot.spec import API_GROUP, API_VERSION, PLURAL, WhatsAppBotSpec

SECTION = "chaos"
REPO = Path(__file__).resolve().parents[2]
CPU_CHOICES = ("300m", "400m", "500m", "600m", "700m")
ACTIONS = ("kill_operator", "restart_apiserver", "delete_pods", "change_spec",
           "suspend_resume")
WEIGHTS = (2, 1, 3, 3, 2)
# When a round's random bots include none on the real node, how often one of them is swapped
# for one that is (so the real workers meet every kind of fault, yet most picks stay on kwok).
REAL_NODE_SHARE = 0.5

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.realnode,
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
                 names: list[str], real: set[str]) -> None:
        self.kube, self.cluster, self.rng, self.names = kube, cluster, rng, names
        self.real = real  # the bots on the real node
        self.rounds: list[list[str]] = []  # the bots each round acted on
        self.real_faults: Counter[str] = Counter()  # faults that hit a bot on the real node
        self.suspended: set[str] = set()  # only the chaos suspends
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

    def some_bots(self, most: int = 3, fault: str = "") -> list[str]:
        """1..most random bots; one of them on the real node in about half the rounds, and
        always while `fault` has not yet hit a (running) bot there."""
        picked = self.rng.sample(self.names, self.rng.randint(1, min(most, len(self.names))))
        must = bool(fault) and self.real_faults[fault] == 0
        if self.real and not self.real & set(picked) and (
                must or self.rng.random() < REAL_NODE_SHARE):
            running = sorted(self.real - self.suspended)
            picked[0] = self.rng.choice(running if must and running else sorted(self.real))
        if self.rounds:
            self.rounds[-1].extend(picked)
        return picked

    def hit(self, fault: str, name: str) -> None:
        if name in self.real:
            self.real_faults[fault] += 1

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
        for name in self.some_bots(fault="resource changes"):
            cpu = self.rng.choice(CPU_CHOICES)
            self.retry(lambda name=name, cpu=cpu: self.cluster.patch_bot(
                name, {"resources": {"limits": {"cpu": cpu, "memory": "256Mi"}}}))
            self.spec_changes += 1
            self.hit("resource changes", name)
            changed.append(name)
        return changed

    def delete_pods(self) -> None:
        for name in self.some_bots(fault="pods deleted"):
            with contextlib.suppress(ApiException):  # 404: suspended or being replaced
                self.retry(lambda name=name: self.cluster.core.delete_namespaced_pod(
                    naming.child_name(name), self.cluster.ns))
                self.pods_deleted += 1
                self.hit("pods deleted", name)

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
            self.hit("resumes" if suspended else "suspends", name)
            (self.suspended.discard if suspended else self.suspended.add)(name)

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
        self.rounds.append([])
        performed = getattr(self, action)()
        if performed is False:
            self.skipped[action] += 1
        else:
            self.done[action] += 1


def test_chaos_rounds_keep_one_pod_and_one_lease_holder_per_bot_and_converge(
        kube: Kube, cluster: Cluster, operator_factory: Callable[..., OperatorProcess],
        real_node: RealNode, tmp_path: Path) -> None:
    figures.section(SECTION, "1. Chaos on the control plane (kwok nodes and the real node)")
    rounds, n_bots, seed = sizes.CHAOS_ROUNDS, sizes.CHAOS_BOTS, sizes.SEED
    rng = random.Random(seed)
    names = [f"c{i:03d}" for i in range(n_bots)]
    real = set(realnode_share.pick_real_bots(names, sizes.CHAOS_REAL_BOTS, rng))
    figures.record(SECTION, "size", f"{rounds} rounds x {n_bots} bots, seed {seed}")
    figures.record(SECTION, "bots on the real node (real kubelet, the worker image)",
                   f"{len(real)} of {n_bots}: {', '.join(sorted(real))}")
    figures.record(SECTION, "control plane", "local, started by this session (API-server "
                   "restarts included)" if kube.local is not None else
                   "$KUBECONFIG cluster: API-server restarts SKIPPED (never restart a shared "
                   "API server)")
    figures.note(SECTION, "kwok runs no containers: a kubelet stand-in runs the worker's real "
                 "Lease elector (botworker.adapters.lease_elector.LeaseElector, "
                 "identity = pod name, the bot's own "
                 "ServiceAccount token) for every Running pod on kwok's nodes and stops it "
                 "(with release) when the pod terminates, before it starts the next pod's; on "
                 "the real node the worker image itself does all that, and its live workers "
                 "are counted from the node's processes (tests/reliability/realnode_share.py)")
    store = TemplateStore(REPO / "operator" / "bot-templates")
    admin = cluster.api_client
    standin = KubeletStandIn(admin, cluster.ns, real_nodes=frozenset({real_node.name})).start()
    recorder_client = kube.api_client()
    assert isinstance(recorder_client, client.ApiClient)
    # Every operator of the run may place a bot on the real node (the tests/realnode settings).
    factory = functools.partial(operator_factory, extra_env=OPERATOR_ENV)
    with NamespaceRecorder(recorder_client, cluster.ns, on_pod=standin.on_pod) as rec, \
            realnode_share.WorkerSampler(real_node, cluster.ns) as sampler:
        chaos = Chaos(kube, cluster, factory, rng, names, real)
        t0 = time.monotonic()
        for i, name in enumerate(names):
            cluster.create_bot(name, realnode_share.bot_spec(
                {"serverName": f"tenant-{i % 3}", "storage": {"retainPolicy": "Delete"}},
                name in real))
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

        # The stand-in's electors and the real workers settle too: every running bot's pod
        # holds its Lease.
        def lease_settled() -> bool:
            bots = bots_by_name(cluster)
            holders = standin.holders_now()
            for name in names:
                suspended = bool(bots[name]["spec"].get("suspend"))
                if name in real:
                    if not realnode_share.real_lease_settled(
                            cluster.coord, cluster.core, cluster.ns, name, suspended, sampler):
                        return False
                    continue
                if suspended:
                    continue
                pod = cluster.pod(naming.child_name(name))
                if pod is None or holders.get(name) != {pod.metadata.uid}:
                    return False
            return True

        eventually(lease_settled, timeout=90, interval=1.0, what="every Lease held by its pod")
        time.sleep(1.0)  # the last events reach the recorder
        real_restarts = {name: realnode_share.restarts(cluster.pod(naming.child_name(name)))
                         for name in sorted(real)}
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
    figures.record(SECTION, "how many of each round's bots ran on the real node",
                   realnode_share.per_round(chaos.rounds, real))
    figures.record(SECTION, "faults that hit a bot on the real node",
                   ", ".join(f"{n} {fault}" for fault, n in sorted(chaos.real_faults.items()))
                   or "none")
    figures.record(SECTION, "real node: worker containers run / most alive at once per bot",
                   f"{sum(len(c) for c in sampler.seen.values())} / "
                   f"{max(sampler.most.values(), default=0)} "
                   f"({sampler.samples} samples of the node's processes)")
    figures.record(SECTION, "real node: pods not started by the stand-in (a real kubelet's)",
                   len(standin.left_to_real_nodes))
    figures.record(SECTION, "real node: container restarts at the end (crash, OOM, probe)",
                   ", ".join(f"{b} {n}" for b, n in real_restarts.items()))
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
    assert standin.acquisitions >= n_bots - len(real)
    assert sampler.doubles == [], sampler.doubles  # never two live workers of a bot
    assert set(sampler.seen) == real, (sorted(sampler.seen), sorted(real))
    assert all(chaos.real_faults[f] >= 1 for f in ("pods deleted", "resource changes")), \
        chaos.real_faults
