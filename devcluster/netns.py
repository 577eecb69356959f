"""The real node's network: a network namespace of its own with no default route, joined to the
host by one veth pair, so nothing the node or its pods send can leave the machine.

Why by construction and not by rules alone: without kube-proxy a pod's packets to a Service IP
or any outside address follow the routing table of the namespace they are in; in the host's,
that is the default route out of the machine. In the node's namespace the only routes are the
veth link (a /30 to the host end) and the pod bridge, so a packet to anywhere else gets "network
unreachable" at once. On top of that the node's edge (its iptables, inside its namespace):
- the `kubernetes` Service address (10.0.0.1:443) is DNAT'ed to the API server forwarder on the
  host end of the veth (devcluster/forward.py), for kubelet and pods alike;
- towards the host only that forwarder is allowed, and from the host only the API server's calls
  to the kubelet (logs, exec) and the host's own connections to pods; everything else is
  rejected (fast, with a reset or an ICMP error).

A slot number (0-63) keeps several nodes on one machine apart (a `devcluster up` and a test
session's): its namespace, veth name and addresses derive from it. A slot's record in
RECORDS_DIR names the processes that use it, so a slot left by a killed session is recognised
and reclaimed; teardown removes the namespace (and the veth pair and the host route with it)
and the record.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devcluster.cgroups import kill_tree

SLOTS = 64
NETNS_PREFIX = "wabot-node-"
VETH_HOST_PREFIX = "wabot-n"  # + slot: at most 15 characters
VETH_NODE = "wabot0"
BRIDGE = "cni0"
SERVICE_IP = "10.0.0.1"
SERVICE_PORT = 443
KUBELET_PORT = 10250
RECORDS_DIR = Path("/run/wabot-node")
# A slot whose record names no live process is taken over only after this long: its creator
# may be between `ip netns add` and starting its processes.
STALE_AFTER_S = 120.0


def _run(*argv: str, input: str | None = None) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, input=input)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


class _PerSlot:
    """A name or address of one slot: `template` with the slot put in for {slot}."""

    def __init__(self, template: str) -> None:
        self.template = template

    def __get__(self, net: NodeNetwork, owner: type | None = None) -> str:
        return self.template.format(slot=net.slot)


@dataclass(frozen=True)
class NodeNetwork:
    """Addresses and names of one slot. The link is 10.213.<slot>.0/30 (host end .1, node .2);
    the pods get 10.214.<slot>.0/24 on the bridge inside the node's namespace."""

    slot: int
    forward_port: int = 6443

    netns = _PerSlot(NETNS_PREFIX + "{slot}")
    netns_path = _PerSlot(f"/run/netns/{NETNS_PREFIX}{{slot}}")
    veth_host = _PerSlot(VETH_HOST_PREFIX + "{slot}")
    host_ip = _PerSlot("10.213.{slot}.1")
    node_ip = _PerSlot("10.213.{slot}.2")
    pod_cidr = _PerSlot("10.214.{slot}.0/24")

    @property
    def record(self) -> Path:
        return RECORDS_DIR / f"{self.slot}.json"

    def exec_argv(self) -> list[str]:
        """The prefix that runs a command inside the node's network namespace only (`ip netns
        exec` would also remount /sys and hide the host's cgroup mounts from the kubelet)."""
        return ["nsenter", f"--net={self.netns_path}", "--"]

    # --- setup ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Link, addresses, routes and the edge's rules, all before any pod can start."""
        n = self.exec_argv()
        _run("ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", VETH_NODE,
             "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth_host)
        _run("ip", "link", "set", self.veth_host, "up")
        _run(*n, "ip", "link", "set", "lo", "up")
        _run(*n, "ip", "addr", "add", f"{self.node_ip}/30", "dev", VETH_NODE)
        _run(*n, "ip", "link", "set", VETH_NODE, "up")
        # The Service address is the node's own (on lo): the kubelet's connections to it have a
        # route, the edge's DNAT sends port 443 on to the forwarder, and any other port ends at
        # the node itself. Nothing else of 10.0.0.0/24 has a route.
        _run(*n, "ip", "addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
        # The host reaches the pods through the node (a route on the host's veth end: it goes
        # with the link). Nothing routes the other way but the /30.
        _run("ip", "route", "add", self.pod_cidr, "via", self.node_ip, "dev", self.veth_host)
        # IPv6 has no address or route beyond link-local here; turn it off in the namespace so
        # no IPv6 traffic exists at all. Every "network unreachable" answer is sent (the
        # default limit, one per second per pod, leaves a pod's third blocked dial hanging
        # until its timeout instead of failing at once).
        settings = {"ipv6/conf/all/disable_ipv6": 1, "ipv6/conf/default/disable_ipv6": 1,
                    "ipv4/ip_forward": 1, "ipv4/icmp_ratelimit": 0}
        _run(*n, "sh", "-ec", "".join(f"echo {v} > /proc/sys/net/{k}\n"
                                      for k, v in settings.items()))
        _run(*n, "iptables-restore", input=self.edge_rules())
        routes = _run(*n, "ip", "route", "show", "default")
        if routes.strip():  # the construction's one promise: check it
            raise RuntimeError(f"{self.netns} has a default route: {routes.strip()}")

    def edge_rules(self) -> str:
        """The node's iptables (inside its namespace): what may cross the veth."""
        h, node, pods, fwd = self.host_ip, self.node_ip, self.pod_cidr, self.forward_port
        return f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d {SERVICE_IP}/32 -p tcp --dport {SERVICE_PORT} -j DNAT --to-destination {h}:{fwd}
-A OUTPUT -d {SERVICE_IP}/32 -p tcp --dport {SERVICE_PORT} -j DNAT --to-destination {h}:{fwd}
-A POSTROUTING -o {VETH_NODE} -j SNAT --to-source {node}
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i {VETH_NODE} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -i {VETH_NODE} -s {h} -p tcp --dport {KUBELET_PORT} -j ACCEPT
-A INPUT -i {VETH_NODE} -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -i {VETH_NODE} -j REJECT --reject-with icmp-port-unreachable
-A OUTPUT -o {VETH_NODE} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A OUTPUT -o {VETH_NODE} -d {h} -p tcp --dport {fwd} -j ACCEPT
-A OUTPUT -o {VETH_NODE} -p tcp -j REJECT --reject-with tcp-reset
-A OUTPUT -o {VETH_NODE} -j REJECT --reject-with icmp-net-prohibited
-A FORWARD -i {BRIDGE} -o {BRIDGE} -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i {BRIDGE} -o {VETH_NODE} -d {h} -p tcp --dport {fwd} -j ACCEPT
-A FORWARD -i {VETH_NODE} -o {BRIDGE} -s {h} -d {pods} -j ACCEPT
-A FORWARD -p tcp -j REJECT --reject-with tcp-reset
-A FORWARD -j REJECT --reject-with icmp-net-prohibited
COMMIT
"""

    # --- records and teardown ---------------------------------------------------------------

    def write_record(self, root: Path, pids: list[int]) -> None:
        RECORDS_DIR.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"root": str(root), "pids": pids,
                                           "forward_port": self.forward_port,
                                           "created": time.time()}))

    def teardown(self) -> None:
        """Removes the namespace (its veth end, and with it the host's end and route) and the
        slot's record. Safe to call twice; the processes must be gone first."""
        if Path(self.netns_path).exists():
            _run("ip", "netns", "delete", self.netns)
        with contextlib.suppress(RuntimeError):  # normally gone with its peer already
            _run("ip", "link", "delete", self.veth_host)
        self.record.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            RECORDS_DIR.rmdir()  # only when empty: other slots keep it


def allocate(forward_port: int) -> NodeNetwork:
    """The first free slot, its namespace created (`ip netns add` fails on a taken name, so two
    starts never share a slot). A slot left by a process that is gone is reclaimed first."""
    for slot in range(SLOTS):
        net = NodeNetwork(slot, forward_port)
        if Path(net.netns_path).exists() and is_stale(net):
            kill_tree(net.netns)  # what a killed session left running in the slot
            net.teardown()
        if _host_uses(net) or Path(net.netns_path).exists():
            continue
        try:
            _run("ip", "netns", "add", net.netns)
        except RuntimeError:
            continue
        return net
    raise RuntimeError(f"no free real-node slot (0-{SLOTS - 1}): see `ip netns list`")


def is_stale(net: NodeNetwork) -> bool:
    try:
        record = json.loads(net.record.read_text())
    except (OSError, ValueError):
        # No record yet: its creator may be a moment past `ip netns add`.
        try:
            return time.time() - Path(net.netns_path).stat().st_mtime > STALE_AFTER_S
        except OSError:
            return False
    if time.time() - float(record.get("created", 0)) < STALE_AFTER_S:
        return False
    return not any(_alive(int(pid)) for pid in record.get("pids", []))


def _host_uses(net: NodeNetwork) -> bool:
    """Whether the host already has an address or route in the slot's ranges."""
    text = _run("ip", "-o", "addr") + _run("ip", "route")
    return f"10.213.{net.slot}." in text or f"10.214.{net.slot}." in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
