"""The worker in its pod on the real node, at the edges: a memory limit it exceeds, another
bot's objects it must not touch, and a spec change that replaces its pod. What is counted is
real: the kernel's OOM kill, the API server's answers to the pod's own token, and the worker
processes the node runs (read from the node's cgroups, not from pod objects)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from devcluster.node import RealNode
from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.realnode.helpers import worker_containers
from tests.realnode.plugin import OPERATOR_ENV, PLACEMENT
from tests.realnode.test_worker_pod import _running_pod
from wabot import naming


def _last_termination(cluster: Cluster, name: str) -> tuple[str | None, int]:
    pod = cluster.core.read_namespaced_pod(name, cluster.ns)
    for cs in pod.status.container_statuses or []:
        last = cs.last_state.terminated if cs.last_state else None
        return (last.reason if last else None), cs.restart_count
    return None, 0


def test_a_worker_over_its_memory_limit_is_oomkilled_and_restarted(
        cluster: Cluster, real_node: RealNode,
        operator_factory: Callable[..., OperatorProcess]) -> None:
    operator_factory(extra_env=OPERATOR_ENV).start()
    cluster.create_bot("hungry", {**PLACEMENT, "resources": {
        "requests": {"memory": "24Mi"}, "limits": {"memory": "24Mi"}}})
    name = naming.child_name("hungry")
    reason, restarts = eventually(
        lambda: (r := _last_termination(cluster, name))[1] >= 1 and r, timeout=120,
        what="the worker container restarted")
    assert reason == "OOMKilled", (reason, restarts)
    eventually(lambda: (cluster.bot("hungry").get("status") or {}).get("restarts", 0) >= 1,
               timeout=60, what="status.restarts written by the operator")


CHECK_OTHER = r"""
import json, ssl, sys, urllib.error, urllib.request
ns, own, other = sys.argv[1:4]
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
token = open(f"{sa}/token").read()
def call(method, path, body=None):
    req = urllib.request.Request("https://kubernetes.default.svc" + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": "application/merge-patch+json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
lease = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/"
bots = f"/apis/wabot.io/v1alpha1/namespaces/{ns}/whatsappbots/"
print(json.dumps({
    "own lease": call("GET", lease + f"wabot-{own}"),
    "other lease": call("GET", lease + f"wabot-{other}"),
    "other lease patch": call("PATCH", lease + f"wabot-{other}",
                              {"spec": {"holderIdentity": f"wabot-{own}"}}),
    "other status patch": call("PATCH", bots + f"{other}/status",
                               {"status": {"worker": {"lastError": "x"}}}),
    "secrets": call("GET", f"/api/v1/namespaces/{ns}/secrets"),
}))
"""


def test_a_worker_is_denied_on_another_bots_objects(
        kube: Kube, cluster: Cluster, real_node: RealNode,
        operator_factory: Callable[..., OperatorProcess]) -> None:
    """The pod's own ServiceAccount token, through the node's path to the API server (the
    Service name does not resolve without DNS, so the pod's /etc/hosts is not used: the
    request goes to 10.0.0.1 with the name as TLS server name)."""
    operator_factory(extra_env=OPERATOR_ENV).start()
    cluster.create_bot("alpha", PLACEMENT)
    cluster.create_bot("beta", PLACEMENT)
    for bot in ("alpha", "beta"):
        eventually(lambda b=bot: _running_pod(cluster, naming.child_name(b)), timeout=90,
                   what=f"{bot}'s pod running")
    script = CHECK_OTHER.replace('"https://kubernetes.default.svc"',
                                 '"https://10.0.0.1"')
    out = kube.kubectl("-n", cluster.ns, "exec", naming.child_name("alpha"), "-c", "worker",
                       "--", "python3", "-c", script, cluster.ns, "alpha", "beta").stdout
    codes = json.loads(out)
    assert codes == {"own lease": 200, "other lease": 403, "other lease patch": 403,
                     "other status patch": 403, "secrets": 403}, codes


def _worker_containers(node: RealNode, namespace: str, bot: str) -> set[str]:
    return worker_containers(node, namespace).get(bot, set())


def test_a_spec_change_rolls_the_pod_with_never_two_worker_containers(
        cluster: Cluster, real_node: RealNode,
        operator_factory: Callable[..., OperatorProcess]) -> None:
    operator_factory(extra_env=OPERATOR_ENV).start()
    cluster.create_bot("roller", PLACEMENT)
    name = naming.child_name("roller")
    first = eventually(lambda: _running_pod(cluster, name), timeout=90, what="first pod")
    eventually(lambda: _worker_containers(real_node, cluster.ns, "roller"), timeout=30,
               what="the worker's processes on the node")
    samples: list[set[str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_worker_containers(real_node, cluster.ns, "roller"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cluster.patch_bot("roller", {"env": [{"name": "ROLL", "value": "1"}]})
        second: Any = eventually(
            lambda: _running_pod(cluster, name, not_uid=first.metadata.uid), timeout=90,
            what="the replacement pod running")
        eventually(lambda: _worker_containers(real_node, cluster.ns, "roller"), timeout=30,
                   what="the replacement's worker processes")
    finally:
        stop.set()
        sampler.join(5)
    env = {e.name: e.value for e in second.spec.containers[0].env or []}
    assert env.get("ROLL") == "1"
    seen = set().union(*samples)
    assert len(seen) >= 2, f"no replacement container seen: {seen}"  # the roll happened
    assert max(len(s) for s in samples) == 1, [s for s in samples if len(s) > 1][:3]
