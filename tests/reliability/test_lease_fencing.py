"""1b. Lease fencing between two processes with the same pod name.

The pod name is fixed (`wabot-N`) and it is the Lease identity (POD_NAME). If a pod object is
force-deleted (`kubectl delete --force`, a node declared lost) while its process still runs, the
operator starts a new pod of the same name at once, and both processes run the same bot: the
situation the Lease exists for. The new process must then wait until the old one has stopped
renewing and the record has expired, not take the record for its own because it carries its
name; and stopping it must not release a Lease it never held. Two real `LeaseElector`s (the
worker's) against the real API server.
"""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from botworker.adapters.kube_client import KubeClient
from botworker.adapters.lease_elector import LeaseElector
from botworker.core.lease import Timing
from botworker.metrics import Metrics
from tests.operator.helpers import Cluster, eventually
from tests.reliability import figures

SECTION = "lease"
pytestmark = [pytest.mark.cluster, pytest.mark.slow]
TIMING = Timing(6.0)  # renew every 2 s, fence after 4 s without a renewal, expire after 6 s


class Holders:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: set[str] = set()
        self.most = 0
        self.acquired: dict[str, float] = {}

    def elector(self, cluster: Cluster, lease: str, label: str) -> LeaseElector:
        def acquired() -> None:
            with self.lock:
                self.now.add(label)
                self.most = max(self.most, len(self.now))
                self.acquired[label] = time.monotonic()

        def lost(_reason: str) -> None:
            with self.lock:
                self.now.discard(label)

        # The worker's own client, with the admin credentials of $KUBECONFIG like `cluster`.
        return LeaseElector(KubeClient.from_kubeconfig(), cluster.ns, lease, lease,
                            Metrics(label, "t"),
                            on_acquired=acquired, on_lost=lost, timing=TIMING)


def new_lease(cluster: Cluster, lease: str) -> None:
    """An empty Lease, as the operator pre-creates it for a bot."""
    cluster.coord.create_namespaced_lease(cluster.ns, client.V1Lease(
        metadata=client.V1ObjectMeta(name=lease), spec=client.V1LeaseSpec()))


def holder(cluster: Cluster, lease: str) -> str | None:
    spec = cluster.coord.read_namespaced_lease(lease, cluster.ns).spec
    return spec.holder_identity if spec else None


def test_a_second_process_with_the_same_pod_name_waits_for_the_first(cluster: Cluster) -> None:
    figures.section(SECTION, "1b. Lease fencing between two processes with one pod name")
    lease = "wabot-twin"
    new_lease(cluster, lease)
    holders = Holders()
    old = holders.elector(cluster, lease, "old process")
    old.start()
    eventually(lambda: old.held, timeout=20, what="the old process holds the Lease")

    # The pod object is force-deleted; a new pod of the same name starts its worker.
    new = holders.elector(cluster, lease, "new process")
    new.start()
    time.sleep(2 * TIMING.duration_s)  # the old process keeps renewing all this time
    both_at_once = holders.most
    new_held_early = new.held

    # The new pod is deleted again before it got the Lease: its release must not free the
    # Lease the old process still holds.
    extra = holders.elector(cluster, lease, "short-lived process")
    extra.start()
    time.sleep(TIMING.retry_interval_s * 2)
    extra.stop(release=True)
    still_held = holder(cluster, lease) == lease and old.held

    # The old process finally dies (no release: killed): the new one takes over once the
    # record has gone unrenewed for a whole duration, not before.
    died = time.monotonic()
    old.stop(release=False)
    eventually(lambda: new.held, timeout=4 * TIMING.duration_s, what="the hand-over")
    waited = holders.acquired["new process"] - died
    new.stop(release=True)

    figures.record(SECTION, "processes holding at once (same identity)", both_at_once)
    figures.record(SECTION, "new process took the Lease while the old one renewed",
                   new_held_early)
    figures.record(SECTION, "release by a process that never held it freed the Lease",
                   not still_held)
    figures.record(SECTION, "hand-over after the old process died",
                   f"{waited:.1f} s (lease duration {TIMING.duration_s:.0f} s)")
    assert both_at_once == 1 and not new_held_early
    assert still_held
    assert waited >= TIMING.duration_s - TIMING.renew_interval_s


def test_the_rule_itself_a_record_of_my_name_i_do_not_hold_is_waited_out() -> None:
    """The same decision without a cluster (botworker/core/lease.py)."""
    from datetime import UTC, datetime

    from botworker.core import lease as lz

    rec = lz.LeaseRecord("wabot-twin", 6, datetime(2030, 1, 1, tzinfo=UTC), None, 0, "9")
    obs = lz.observe(None, rec, 100.0)
    assert lz.decide(rec, "wabot-twin", obs, 100.0, 6, held=True) == "renew"
    assert lz.decide(rec, "wabot-twin", obs, 105.9, 6, held=False) == "wait"
    assert lz.decide(rec, "wabot-twin", obs, 106.0, 6, held=False) == "acquire"
    patch = lz.claim_patch(rec, "wabot-twin", datetime(2030, 1, 1, tzinfo=UTC), 6,
                           taking_over=True)
    assert patch["spec"]["leaseTransitions"] == 1 and "acquireTime" in patch["spec"]


def test_a_process_that_fenced_itself_takes_back_only_its_own_unchanged_record(
        cluster: Cluster) -> None:
    """After an API outage longer than the renew deadline a worker fences itself. When the
    API answers again and the Lease still shows exactly the record this process wrote, nobody
    else has taken it: it resumes at once. If the record changed (another process of the same
    pod name wrote it), it waits like anyone else."""
    figures.section(SECTION, "1b. Lease fencing between two processes with one pod name")
    lease = "wabot-fenced"
    new_lease(cluster, lease)
    holders = Holders()
    e = holders.elector(cluster, lease, "worker")
    e.step()
    assert e.held
    e._lose("renewals failed past the deadline")  # what its fence timer does in an outage
    assert not e.held
    e.step()
    resumed = e.held
    e._lose("renewals failed past the deadline")
    # Another process of the same pod name writes the record meanwhile (as after a forced
    # delete): the record is no longer this process's.
    cluster.coord.patch_namespaced_lease(lease, cluster.ns, {"spec": {
        "renewTime": "2030-01-01T00:00:00.000000Z"}})
    e.step()
    waited = not e.held
    e.stop(release=True)
    released_foreign = holder(cluster, lease) is None
    figures.record(SECTION, "after fencing itself: own unchanged record resumed at once / "
                   "a record someone else wrote waited for", f"{resumed} / {waited}")
    assert resumed and waited and not released_foreign
