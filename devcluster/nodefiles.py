"""The real node's files: its certificate from the cluster's CA, the kubelet's kubeconfig and
configuration, containerd's configuration and start script, the CNI network and the RBAC
that makes the certificate's user a node. All under the node's directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from devcluster.cluster import LocalCluster, _openssl
from devcluster.netns import BRIDGE, KUBELET_PORT, SERVICE_IP, SERVICE_PORT, NodeNetwork

PAUSE_IMAGE = "localhost/wabot-pause:1"
TAINT_KEY = "wabot.io/real-node"
# The /proc/sys entries the kubelet sets at start (container_manager_linux.go,
# setupKernelTunables): files bind-mounted over them take the writes instead of the host.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic",
                   "kernel/panic_on_oops", "kernel/keys/root_maxkeys",
                   "kernel/keys/root_maxbytes")


@dataclass(frozen=True)
class NodeFiles:
    kubeconfig: Path
    kubelet_config: Path
    containerd_config: Path
    containerd_script: Path
    rbac: Path


def write_all(root: Path, cluster: LocalCluster, name: str, net: NodeNetwork,
              socket: Path) -> NodeFiles:
    pki = root / "pki"
    make_node_certificate(cluster.pki, pki, name, net.node_ip)
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        # The kubelet reaches the API server as pods do: through the Service address, which
        # the node's edge maps to the forwarder on the veth's host end.
        "clusters": [{"name": "wabot-dev", "cluster": {
            "server": f"https://{SERVICE_IP}:{SERVICE_PORT}",
            "certificate-authority": str(cluster.pki / "ca.crt")}}],
        "users": [{"name": name, "user": {"client-certificate": str(pki / "node.crt"),
                                          "client-key": str(pki / "node.key")}}],
        "contexts": [{"name": "node", "context": {"cluster": "wabot-dev", "user": name}}],
        "current-context": "node"}, indent=2))
    rbac = root / "rbac.json"
    rbac.write_text(json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"wabot-node:{name}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:node"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": f"system:node:{name}"}]}))
    return NodeFiles(
        kubeconfig=kubeconfig,
        kubelet_config=_kubelet_config(root, cluster, net, socket),
        containerd_config=_containerd_config(root, socket, net.pod_cidr),
        containerd_script=_containerd_script(root),
        rbac=rbac)


def make_node_certificate(ca_dir: Path, pki: Path, name: str, ip: str) -> None:
    """One key pair for both sides of the kubelet: its client identity (`system:node:NAME` in
    `system:nodes`, what RBAC's system:node role is bound to) and its serving certificate."""
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "node.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
        f"subjectAltName=IP:{ip},DNS:{name}\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
             "-subj", f"/O=system:nodes/CN=system:node:{name}", cwd=pki)
    _openssl("x509", "-req", "-in", "node.csr", "-CA", str(ca_dir / "ca.crt"),
             "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-CAserial", "ca.srl",
             "-days", "30", "-out", "node.crt", "-extfile", "node.cnf", "-extensions", "ext",
             cwd=pki)


def _kubelet_config(root: Path, cluster: LocalCluster, net: NodeNetwork,
                    socket: Path) -> Path:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # The machines' kind: cgroup v1 (hybrid), no systemd as PID 1, no swap policy.
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "cgroupRoot": f"/{net.netns}",
        "address": net.node_ip, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "tlsCertFile": str(root / "pki" / "node.crt"),
        "tlsPrivateKeyFile": str(root / "pki" / "node.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(cluster.pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        # No DNS server anywhere: an empty resolv.conf makes every lookup fail at once.
        "resolvConf": "",
        "podLogsDir": str(root / "pod-logs"),
        # The images are imported, never pulled: image GC off, and no eviction over a full-ish
        # shared disk.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }
    path = root / "kubelet.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _containerd_config(root: Path, socket: Path, pod_cidr: str) -> Path:
    cni = root / "cni"
    cni.mkdir(exist_ok=True)
    state = root / "containerd"
    (cni / "10-wabot.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "wabot-node", "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(state / "ipam")}}]}))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    path = root / "containerd.toml"
    path.write_text(f"""version = 2
root = "{state / 'root'}"
state = "{state / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{socket}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  # root here may not lower oom_score_adj (the sandbox asks for -998): never below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{state / 'runc'}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{state / 'opt'}"
""")
    return path


def _containerd_script(root: Path) -> Path:
    """Runs inside the node's fresh mount namespace: what changes there stays there."""
    sysctl = root / "sysctl"
    sysctl.mkdir(exist_ok=True)
    binds = []
    for entry in KUBELET_SYSCTLS:
        copy = sysctl / entry.replace("/", ".")
        copy.write_text(Path("/proc/sys", entry).read_text())
        binds.append(f'mount --bind "{copy}" /proc/sys/{entry}')
    path = root / "containerd.sh"
    path.write_text("\n".join([
        "#!/bin/sh",
        "# The real node's mount namespace (devcluster/node.py): sysctl copies, a private /run.",
        "set -eu",
        *binds,
        # Shims, runc and the CRI's pod network namespaces write under /run: a tmpfs of the
        # node's own takes it all, and it goes with the namespace.
        "mount -t tmpfs -o mode=755 wabot-node-run /run",
        "mkdir -p /run/netns /run/lock",
        'exec containerd --config "$1"',
        ""]))
    return path
