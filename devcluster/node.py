"""A real node beside kwok: a kubelet with containerd (Debian's, with runc and the CNI plugins),
joined to a LocalCluster, so the worker image really runs as a bot's pod.

Where everything lives, and why:
- network: a namespace of its own with no default route (devcluster/netns.py), so nothing a
  pod sends can leave the machine; the API server is reached through a forwarder on the host
  end of the veth (devcluster/forward.py);
- mounts: containerd and the kubelet share a private mount namespace with a tmpfs over /run
  and files bind-mounted over the /proc/sys entries the kubelet sets, so the host's sysctls
  and mount table never change and everything mounted goes with the namespace;
- processes: one cgroup tree per node (devcluster/cgroups.py), the kubelet's `cgroupRoot`;
- files: the cluster's directory (`<root>/node`), removed by `stop()`.
The node registers with the taint `wabot.io/real-node=true:NoSchedule` and the label
`wabot.io/real-node=true`: only pods that tolerate it land there, kwok keeps the rest.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devcluster import cgroups, nodefiles, provisioner
from devcluster.cluster import LocalCluster, _alive, _terminate
from devcluster.images import import_pause
from devcluster.netns import NodeNetwork, allocate

NODE_NAME = "wabot-real-node"
NODE_LABEL = "wabot.io/real-node"
STORAGE_CLASS = "wabot-real-node"
REQUIRED = ("containerd", "ctr", "runc", "nsenter", "unshare", "iptables-restore")
CNI_BIN = Path("/usr/lib/cni")
REPO = Path(__file__).resolve().parent.parent  # where `python -m devcluster.*` imports from


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node (scripts/setup.sh installs it all)."""
    missing = [tool for tool in REQUIRED if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").exists()]
    missing += [f"{CNI_BIN}/{p}" for p in ("bridge", "host-local", "loopback")
                if not (CNI_BIN / p).exists()]
    return missing


@dataclass
class RealNode:
    """One kubelet + containerd joined to `cluster`. `start()` returns when the Node is Ready
    and the pause image is imported; `stop()` leaves nothing behind."""

    cluster: LocalCluster
    name: str = NODE_NAME
    net: NodeNetwork | None = None
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.cluster.root / ("node" if self.name == NODE_NAME else f"node-{self.name}")

    @property
    def label_value(self) -> str:
        """`wabot.io/real-node=true` selects the devcluster's node; another node of the same
        cluster (the teardown test's) carries its own name, so nothing lands there unasked."""
        return "true" if self.name == NODE_NAME else self.name

    @property
    def storage_class(self) -> str:
        """Local volumes on this node (devcluster/provisioner.py): what a bot placed here
        names in spec.storage.storageClassName."""
        return STORAGE_CLASS if self.name == NODE_NAME else f"{STORAGE_CLASS}-{self.name}"

    @property
    def cgroup(self) -> str:
        assert self.net is not None
        return self.net.netns

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> RealNode:
        missing = missing_prerequisites()
        if missing:
            raise RuntimeError(f"the real node needs {', '.join(missing)}: run scripts/setup.sh")
        tools = self.cluster.tools
        assert tools is not None
        deadline = time.monotonic() + timeout
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.net = allocate(forward_port=6443)
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, deadline: float) -> None:
        net, tools = self.net, self.cluster.tools
        assert net is not None and tools is not None
        net.write_record(self.root, [])
        net.setup()  # before any process of the node exists
        self._spawn("forwarder", [sys.executable, "-m", "devcluster.forward", net.host_ip,
                                  str(net.forward_port), str(self.cluster.ports["apiserver"])])
        files = nodefiles.write_all(self.root, self.cluster, self.name, net,
                                    self.containerd_socket)
        self.cluster.kubectl("apply", "--server-side", "-f", str(files.rbac))
        sc = self.root / "storageclass.json"
        sc.write_text(json.dumps(provisioner.storage_class(self.storage_class)))
        self.cluster.kubectl("apply", "--server-side", "-f", str(sc))
        self._spawn("provisioner", [sys.executable, "-m", "devcluster.provisioner",
                                    str(self.cluster.root), self.name,
                                    str(self.root / "volumes"), self.storage_class])
        cgroups.create(self.cgroup)
        self._save_state()
        self._spawn("containerd", [
            *net.exec_argv(), "unshare", "--mount", "--propagation", "private", "--",
            "sh", str(files.containerd_script), str(files.containerd_config)], join=True)
        self._wait(self._containerd_up, deadline, "containerd's socket")
        import_pause(self, tools.wabot_pause)
        self._spawn("kubelet", [
            *net.exec_argv()[:-1], f"--mount=/proc/{self.pids['containerd']}/ns/mnt", "--",
            str(tools.kubelet), f"--config={files.kubelet_config}",
            f"--kubeconfig={files.kubeconfig}", f"--root-dir={self.root / 'kubelet'}",
            f"--node-ip={net.node_ip}", f"--hostname-override={self.name}",
            f"--node-labels={NODE_LABEL}={self.label_value}", "--v=1"], join=True)
        self._save_state()
        self._wait(self._ready, deadline, f"node {self.name} Ready")

    def stop(self) -> None:
        """kubelet first (it stops asking for pods), then everything in the node's cgroups
        (containerd, shims, containers), the forwarder, the namespace, the files."""
        if "kubelet" in self.pids:
            _terminate(self.pids["kubelet"], grace=5.0)
        if self.net is not None:
            cgroups.kill_tree(self.cgroup)
        for name in ("containerd", "forwarder", "provisioner"):
            if name in self.pids:
                _terminate(self.pids[name], grace=5.0)
        self.pids.clear()
        if self.net is not None:
            self.net.teardown()
        with contextlib.suppress(subprocess.SubprocessError, OSError, AssertionError):
            if self.cluster.pids and all(_alive(p) for p in self.cluster.pids.values()):
                self.cluster.kubectl("delete", "node", self.name, "--ignore-not-found",
                                     "--wait=false", check=False)
                self.cluster.kubectl("delete", f"storageclass/{self.storage_class}",
                                     f"clusterrolebinding/wabot-node:{self.name}",
                                     "--ignore-not-found", "--wait=false", check=False)
        # The logs outlive the node in the cluster's own log directory (gone with the cluster).
        for log in (self.root / "logs").glob("*.log"):
            with contextlib.suppress(OSError):
                shutil.move(log, self.cluster.root / "logs" / f"{self.root.name}-{log.name}")
        shutil.rmtree(self.root, ignore_errors=True)

    # --- helpers --------------------------------------------------------------------------

    def ctr(self, *args: str, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """containerd's own client on the node's socket, in the CRI's namespace."""
        argv = ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()}")
        return out

    def _spawn(self, name: str, argv: list[str], join: bool = False) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by child
        # The node's daemons start inside its cgroup tree (join): a `cgexec` in shell, so no
        # fork of theirs escapes the tree before we could move it.
        if join:
            assert self.net is not None
            procs = " ".join(str(h / self.cgroup / "daemons" / "cgroup.procs")
                             for h in cgroups.hierarchies())
            argv = ["sh", "-c", f'for f in {procs}; do echo $$ > "$f"; done; exec "$@"',
                    name, *argv]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=REPO)
        log.close()
        self.pids[name] = proc.pid

    def _containerd_up(self) -> bool:
        if not self.containerd_socket.exists():
            return False
        return subprocess.run(["ctr", f"--address={self.containerd_socket}", "version"],
                              capture_output=True).returncode == 0

    def _ready(self) -> bool:
        node = self.cluster._get_json(f"/api/v1/nodes/{self.name}")
        status = node.get("status")
        assert isinstance(status, dict)
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions", []))

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            for name, pid in self.pids.items():
                if not _alive(pid):
                    log = self.root / "logs" / f"{name}.log"
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{tail}")
            with contextlib.suppress(OSError, RuntimeError):
                if check():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}; logs in {self.root / 'logs'}")

    def _save_state(self) -> None:
        assert self.net is not None
        self.net.write_record(self.root, list(self.pids.values()))
        (self.root / "state.json").write_text(json.dumps(
            {"name": self.name, "slot": self.net.slot, "forward_port": self.net.forward_port,
             "pids": self.pids}))

    def alive(self) -> bool:
        return bool(self.pids) and all(_alive(pid) for pid in self.pids.values())

    @classmethod
    def load(cls, cluster: LocalCluster, name: str = NODE_NAME) -> RealNode | None:
        """The node a previous `python -m devcluster up` started for `cluster`, if any."""
        node = cls(cluster=cluster, name=name)
        try:
            state = json.loads((node.root / "state.json").read_text())
        except (OSError, ValueError):
            return None
        node.net = NodeNetwork(int(state["slot"]), int(state["forward_port"]))
        node.pids = {k: int(v) for k, v in state["pids"].items()}
        return node
