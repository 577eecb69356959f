"""The worker image running as a bot's pod on the real node: the operator's pod (hardened:
uid 10001, read-only root, no capabilities), the worker's own ServiceAccount token, its Lease,
its status report, its probes, its auth volume and SIGTERM on pod deletion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from devcluster.node import RealNode
from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.realnode.helpers import Recorder
from tests.realnode.plugin import OPERATOR_ENV, PLACEMENT, WORKER_IMAGE
from wabot import naming


def _running_pod(cluster: Cluster, name: str,
                 not_uid: str | None = None) -> client.V1Pod | None:
    pod = cluster.core.read_namespaced_pod(name, cluster.ns)
    if pod.metadata.uid == not_uid or pod.metadata.deletion_timestamp is not None:
        return None
    statuses = pod.status.container_statuses or []
    if pod.status.phase == "Running" and statuses and statuses[0].state.running:
        return pod
    return None


def _worker(cluster: Cluster, bot: str) -> dict[str, Any]:
    return dict((cluster.bot(bot).get("status") or {}).get("worker") or {})


def test_a_bot_runs_its_real_worker_on_the_real_node(
        kube: Kube, cluster: Cluster, real_node: RealNode,
        operator_factory: Callable[..., OperatorProcess]) -> None:
    operator_factory(extra_env=OPERATOR_ENV).start()
    cluster.create_bot("real", PLACEMENT)
    name = naming.child_name("real")
    started = time.monotonic()
    pod = eventually(lambda: _running_pod(cluster, name), timeout=90,
                     what="the bot's pod running on the real node")
    print(f"bot created -> worker container running: {time.monotonic() - started:.1f}s")
    assert pod.spec.node_name == real_node.name
    assert pod.spec.containers[0].image == WORKER_IMAGE
    assert pod.status.container_statuses[0].image_id.startswith("sha256:")

    # The worker itself, with its own token: it holds the Lease and reports in status.worker;
    # WhatsApp is unreachable (no route, no DNS), which its report says at once.
    report = eventually(lambda: _report_with_error(cluster, "real", name), timeout=90,
                        what="status.worker with a lastError, written by the worker")
    assert report["state"] in ("Connecting", "Disconnected"), report
    assert "web.whatsapp.com" in report["lastError"], report
    lease = cluster.coord.read_namespaced_lease(name, cluster.ns)
    assert lease.spec.holder_identity == name

    # Readiness follows the WhatsApp connection: live, not ready, and the probe really reached
    # the worker's endpoint (a 503 from it, not a refused connection).
    eventually(lambda: _probe_event(cluster, name, "statuscode: 503"), timeout=30,
               what="a readiness probe answered 503 by the worker")
    pod = cluster.core.read_namespaced_pod(name, cluster.ns)
    assert pod.status.container_statuses[0].ready is False
    assert pod.status.container_statuses[0].restart_count == 0

    # The auth volume (a local volume on the node) is the worker's: uid 10001 writes there,
    # beside the session directory the worker made (auth/<serverName>/bot_<botId>/).
    out = kube.kubectl("-n", cluster.ns, "exec", name, "-c", "worker", "--", "python3", "-c",
                       WRITE_MARKER).stdout.splitlines()
    assert out[0].split() == ["10001", "written"], out
    first_files = set(out[1:])
    assert any(f.startswith("auth/acme/bot_real/") for f in first_files), first_files

    # kubectl delete pod: SIGTERM, the worker releases its Lease and exits 0 within the grace
    # period; the replacement takes the Lease over and finds the volume's files.
    old_uid = pod.metadata.uid
    api = kube.api_client()
    assert isinstance(api, client.ApiClient)
    with Recorder(api, cluster.ns, "pod", name) as pods, \
            Recorder(api, cluster.ns, "lease", name) as leases:
        deleted = time.monotonic()
        kube.kubectl("-n", cluster.ns, "delete", "pod", name, "--wait=false")
        eventually(lambda: _running_pod(cluster, name, not_uid=old_uid), timeout=90,
                   what="the replacement pod running")
        replaced = time.monotonic() - deleted
        eventually(lambda: cluster.coord.read_namespaced_lease(name, cluster.ns)
                   .spec.holder_identity == name, timeout=60, what="the replacement's Lease")
    assert pods.error is None and leases.error is None, (pods.error, leases.error)
    print(f"pod deleted -> replacement running: {replaced:.1f}s; holders {leases.holders()}")
    assert pods.exit_codes().get(old_uid) == 0, pods.exit_codes()
    holders = leases.holders()
    assert None in holders and holders[-1] == name, holders  # released, then taken again
    out = kube.kubectl("-n", cluster.ns, "exec", name, "-c", "worker", "--", "python3", "-c",
                       READ_MARKER).stdout.splitlines()
    assert out[0] == "kept", out
    assert first_files <= set(out[1:]), (first_files, out[1:])  # the session files too


# Run in the worker container: write a file as the worker's user, list the volume's files.
LIST_FILES = """
root = pathlib.Path("/var/lib/wabot")
for f in sorted(root.rglob("*")):
    if f.is_file():
        print(f.relative_to(root))
"""
WRITE_MARKER = """
import os, pathlib
pathlib.Path("/var/lib/wabot/realnode-marker").write_text("kept")
print(os.getuid(), "written")
""" + LIST_FILES
READ_MARKER = """
import pathlib
print(pathlib.Path("/var/lib/wabot/realnode-marker").read_text())
""" + LIST_FILES


def _report_with_error(cluster: Cluster, bot: str, pod: str) -> dict[str, Any] | None:
    report = _worker(cluster, bot)
    return report if report.get("podName") == pod and report.get("lastError") else None


def _probe_event(cluster: Cluster, pod: str, text: str) -> bool:
    events = cluster.core.list_namespaced_event(
        cluster.ns, field_selector=f"involvedObject.name={pod},reason=Unhealthy").items
    return any("Readiness probe failed" in (e.message or "") and text in (e.message or "")
               for e in events)
