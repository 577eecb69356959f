"""`stop()` (what `python -m devcluster down` calls) leaves nothing of a real node on the host:
no network namespace, link, address, route, rule, iptables rule, mount, cgroup, process or
file. A second node, with a pod running on it, is started beside the session's and stopped;
the host's state is read before, during (so the identifiers looked for are the right ones) and
after."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from devcluster import cgroups
from devcluster.node import NODE_LABEL, RealNode
from devcluster.nodefiles import PAUSE_IMAGE
from tests.conftest import Kube


def _host_state() -> list[str]:
    """Every line of the host's network, mount, cgroup and process tables."""
    lines: list[str] = []
    for argv in (["ip", "netns", "list"], ["ip", "-o", "link"], ["ip", "-o", "addr"],
                 ["ip", "route", "show", "table", "all"], ["ip", "rule"], ["iptables-save"],
                 ["ls", "-a", "/run", "/run/netns", "/run/wabot-node"]):
        out = subprocess.run(argv, capture_output=True, text=True)
        what = " ".join(argv[:2])
        lines += [f"{what}: {line}" for line in out.stdout.splitlines()]
    lines += [f"mount: {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for h in cgroups.hierarchies():
        lines += [f"cgroup: {dirpath}" for dirpath, _d, _f in os.walk(h)]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            lines.append(f"process {proc.name}: {cmd}")
    return lines


def _mentions(lines: list[str], marks: list[str]) -> list[str]:
    return [line for line in lines if any(mark in line for mark in marks)]


def test_stopping_a_real_node_leaves_nothing_on_the_host(kube: Kube,
                                                         real_node: RealNode) -> None:
    node = RealNode(real_node.cluster, name="wabot-teardown-node").start()
    try:
        assert node.net is not None
        net = node.net
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "teardown-probe", "namespace": "default"},
               "spec": {"nodeName": node.name, "containers": [
                   {"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
                   "tolerations": [{"key": NODE_LABEL, "operator": "Exists"}]}}
        kube.kubectl("apply", "-f", "-", input=json.dumps(pod))
        deadline = time.monotonic() + 60
        while kube.kubectl("get", "pod", "teardown-probe", "-o", "jsonpath={.status.phase}",
                           check=False).stdout != "Running":
            assert time.monotonic() < deadline, kube.kubectl("describe", "pod",
                                                             "teardown-probe").stdout
            time.sleep(0.2)
        marks = [net.netns, net.veth_host, f"10.213.{net.slot}.", f"10.214.{net.slot}.",
                 str(node.root), f"/{net.netns}", f"{net.slot}.json"]
        during = _mentions(_host_state(), marks)
        # The marks do name what the node made: its namespace, veth, addresses, route,
        # processes and cgroups are all visible while it runs.
        for kind, mark in (("ip netns", net.netns), ("ip -o", net.veth_host),
                           ("ip route", net.pod_cidr), ("mount", net.netns),
                           ("cgroup", net.netns), ("process", str(node.root))):
            assert any(line.startswith(kind) and mark in line for line in during), (
                kind, mark, during)
    finally:
        node.stop()
        kube.kubectl("delete", "pod", "teardown-probe", "--force", "--grace-period=0",
                     "--ignore-not-found", check=False)
    left = _mentions(_host_state(), marks)
    assert not left, "left behind by the stopped node:\n" + "\n".join(left)
    assert not node.root.exists()
