"""Network safety of the real node: a pod on it can reach the API server through the
`kubernetes` Service address and nothing outside the machine. The node's network namespace has
no default route (devcluster/netns.py), so none of these dials can leave the machine even if
an expectation here were wrong; each must fail at once, not by a timeout.
"""

from __future__ import annotations

import json
import subprocess
import time

from devcluster.netns import NETNS_PREFIX
from devcluster.node import NODE_LABEL, RealNode
from tests.conftest import Kube

PROBE = r"""
import json, socket, sys, time
for host, port in json.loads(sys.argv[1]):
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=10).close()
        result = "connected"
    except OSError as e:
        result = f"{type(e).__name__}: {e}"
    print(json.dumps({"dst": f"{host}:{port}", "result": result,
                      "seconds": round(time.monotonic() - started, 3)}), flush=True)
"""


def _probe_pod(name: str, image: str, targets: list[tuple[str, int]]) -> str:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never", "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Exists",
                             "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": image, "imagePullPolicy": "Never",
                "command": ["python3", "-c", PROBE, json.dumps(targets)],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}}]}}
    return json.dumps(pod)


def _wait_succeeded(kube: Kube, ns: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = kube.kubectl("-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}",
                             check=False).stdout
        if phase in ("Succeeded", "Failed"):
            assert phase == "Succeeded", kube.kubectl("-n", ns, "describe", "pod", name).stdout
            return
        time.sleep(0.3)
    raise AssertionError(kube.kubectl("-n", ns, "describe", "pod", name).stdout)


def test_a_pod_reaches_the_api_server_and_nothing_outside_the_machine(
        kube: Kube, namespace: str, real_node: RealNode, worker_image: str) -> None:
    assert real_node.net is not None
    host_end = real_node.net.host_ip
    targets = [
        ("1.1.1.1", 443),             # a public address
        ("192.0.2.1", 80),            # the machine's own gateway (its default route's next hop)
        ("10.0.0.10", 53),            # a Service address other than `kubernetes`
        ("10.0.0.123", 443),
        ("10.0.0.1", 80),             # the `kubernetes` address on another port
        (host_end, 22),               # the host end of the veth: only the forwarder is open
        (host_end, 5432),
        ("web.whatsapp.com", 443),    # no DNS server at all
        ("10.0.0.1", 443),            # the API server, through the node's edge
    ]
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=_probe_pod("probe", worker_image,
                                                                        targets))
    _wait_succeeded(kube, namespace, "probe")
    lines = kube.kubectl("-n", namespace, "logs", "probe").stdout.splitlines()
    results = {r["dst"]: r for r in map(json.loads, lines)}
    assert len(results) == len(targets), lines
    assert results["10.0.0.1:443"]["result"] == "connected", results
    for dst, r in results.items():
        if dst == "10.0.0.1:443":
            continue
        assert r["result"] != "connected", f"{dst} was reachable from the real node: {r}"
        assert "timed out" not in r["result"] and r["seconds"] < 1.0, (
            f"{dst} did not fail at once: {r}")


def test_the_node_namespace_has_no_default_route(real_node: RealNode) -> None:
    """The construction the first test relies on, read from the host."""
    assert real_node.net is not None and real_node.net.netns.startswith(NETNS_PREFIX)
    routes = subprocess.run(["ip", "-n", real_node.net.netns, "route", "show", "table", "all"],
                            capture_output=True, text=True, check=True).stdout
    assert "default" not in routes, routes
    v6 = subprocess.run(["ip", "-n", real_node.net.netns, "-6", "route", "show"],
                        capture_output=True, text=True, check=True).stdout
    assert not v6.strip(), v6
