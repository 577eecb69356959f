"""A real, local Kubernetes control plane made of upstream binaries, for tests and local runs.

etcd, kube-apiserver (RBAC, admission plugins on by default, PodSecurity included, a working
service-account token issuer), kube-controller-manager (garbage collector, service accounts,
root CA publisher, PV binder with the hostPath provisioner), kube-scheduler and kwok (simulated
nodes, so pods are scheduled and reach Running). Everything binds to 127.0.0.1, certificates
are made fresh for each cluster, and all state lives in one directory that `stop()` removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.tools import Tools, find_tools

SERVICE_CIDR = "10.0.0.0/24"
KWOK_NODE_PREFIX = "kwok-node-"
STORAGE_CLASS = "standard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(pki: Path) -> None:
    """A CA, the API server's serving cert, an admin client cert (system:masters) and the
    service-account signing key pair. openssl is on every Debian machine; no Python crypto
    dependency is needed for this."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=wabot-devcluster-ca", cwd=pki)
    (pki / "san.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "[client]\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    for name, subj, ext in (
        ("apiserver", "/CN=kube-apiserver", "ext"),
        ("admin", "/O=system:masters/CN=wabot-admin", "client"),
    ):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", subj, cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-out", f"{name}.crt",
                 "-extfile", "san.cnf", "-extensions", ext, cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    """JSON is valid YAML: kubectl, helm, kopf and the Python client all read this file."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "wabot-dev", "cluster": {
            "server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "wabot-admin", "user": {
            "client-certificate": str(pki / "admin.crt"),
            "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "wabot-dev", "context": {
            "cluster": "wabot-dev", "user": "wabot-admin", "namespace": "default"}}],
        "current-context": "wabot-dev",
    }
    path.write_text(json.dumps(config, indent=2))


@dataclass
class LocalCluster:
    """One control plane rooted at `root`. `start()` returns when the API server answers,
    the default ServiceAccount exists and a simulated node is Ready."""

    root: Path
    nodes: int = 1
    # The default StorageClass's volumeBindingMode. WaitForFirstConsumer: a claim is
    # provisioned and bound once a pod using it is scheduled, as by the default classes of
    # kind, GKE, EKS and AKS. With Immediate a new pod is unschedulable until its claim is
    # bound, and the scheduler retries it; after an API-server restart, when the
    # controller-manager bound claims up to ~100 s late, it once missed a claim's binding: the
    # pod stayed Pending 43 s after it (until the test gave up), left to the scheduler's
    # periodic retry of unschedulable pods (after 5 minutes).
    volume_binding_mode: str = "WaitForFirstConsumer"
    tools: Tools | None = None
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> LocalCluster:
        tools = self.tools = self.tools or find_tools()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        make_certificates(self.pki)
        self.ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver")}
        write_kubeconfig(self.kubeconfig, self.server, self.pki)
        deadline = time.monotonic() + timeout
        self._start_etcd(tools)
        self._start_apiserver(tools)
        self._wait(lambda: self._get("/readyz") == 200, deadline, "kube-apiserver /readyz")
        self._start_controller_manager(tools)
        self._start_scheduler(tools)
        self._start_kwok(tools)
        self._bootstrap()
        self._wait(self._default_service_account_exists, deadline,
                   "the default ServiceAccount (kube-controller-manager)")
        self._wait(self._nodes_ready, deadline, "a Ready kwok node")
        self._save_state()
        return self

    def stop(self, remove: bool = True) -> None:
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver",
                     "etcd"):
            pid = self.pids.get(name)
            if pid:
                _terminate(pid)
        self.pids.clear()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Kill the API server and start it again on the same port: clients see it vanish
        and come back, exactly as in a control-plane upgrade."""
        assert self.tools is not None
        _terminate(self.pids.pop("kube-apiserver"))
        self._start_apiserver(self.tools)
        self._wait(lambda: self._get("/readyz") == 200, time.monotonic() + timeout,
                   "kube-apiserver /readyz after restart")
        self._save_state()

    def log_lines(self, name: str, containing: str, limit: int = 40) -> list[str]:
        """The last `limit` lines of one component's log that mention `containing` (a pod's
        name, say): what a failed test shows of the control plane's side."""
        try:
            text = (self.root / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if containing in line][-limit:]

    # --- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by child
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.pids[name] = proc.pid

    def _start_etcd(self, t: Tools) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn("etcd", [
            str(t.etcd), "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--unsafe-no-fsync=true",
            "--log-level", "warn"])

    def _start_apiserver(self, t: Tools) -> None:
        pki = self.pki
        self._spawn("kube-apiserver", [
            str(t.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            f"--cert-dir={self.root / 'apiserver-certs'}",
            f"--secure-port={self.ports['apiserver']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--endpoint-reconciler-type=none",
            # The real node (devcluster/node.py): `kubectl logs`/`exec` reach its kubelet at
            # its InternalIP (its name resolves nowhere), with the admin's client certificate.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--profiling=false",
            "--v=1"])

    def _start_controller_manager(self, t: Tools) -> None:
        self._spawn("kube-controller-manager", [
            str(t.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
            f"--cluster-signing-key-file={self.pki / 'ca.key'}",
            "--enable-hostpath-provisioner=true",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
            "--concurrent-gc-syncs=5",
            "--v=1"])

    def _start_scheduler(self, t: Tools) -> None:
        self._spawn("kube-scheduler", [
            str(t.kube_scheduler), f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--secure-port=0", "--v=1"])

    def _start_kwok(self, t: Tools) -> None:
        self._spawn("kwok", [
            str(t.kwok), f"--kubeconfig={self.kubeconfig}",
            f"--config={t.kwok_stages}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.1/16", "--node-ip=10.0.0.2",
            f"--server-address=127.0.0.1:{free_port()}"])

    def _bootstrap(self) -> None:
        """Objects a kind or cloud cluster has from the start: simulated nodes and a default
        StorageClass whose PVCs the controller-manager's hostPath provisioner binds."""
        objects: list[dict[str, object]] = [{
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubernetes.io/host-path",
            "reclaimPolicy": "Delete", "volumeBindingMode": self.volume_binding_mode}]
        for i in range(self.nodes):
            name = f"{KWOK_NODE_PREFIX}{i}"
            objects.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name,
                             "annotations": {"kwok.x-k8s.io/node": "fake",
                                             "node.alpha.kubernetes.io/ttl": "0"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                        "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64"}},
                # ephemeral-storage: every real node reports it, and pods that request it
                # (the chart's) are unschedulable on a node without it.
                "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "2000",
                                           "ephemeral-storage": "1Ti"},
                           "capacity": {"cpu": "64", "memory": "256Gi", "pods": "2000",
                                        "ephemeral-storage": "1Ti"}}})
        manifest = self.root / "bootstrap.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self.kubectl("apply", "--server-side", "-f", str(manifest))

    # --- helpers --------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.tools is not None
        return subprocess.run([str(self.tools.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                              check=check, capture_output=True, text=True)

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=5) as r:
                return int(r.status)
        except OSError:
            return 0

    def _get_json(self, path: str) -> dict[str, object]:
        with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=10) as r:
            return dict(json.load(r))

    def _default_service_account_exists(self) -> bool:
        return self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200

    def _nodes_ready(self) -> bool:
        nodes = self._get_json("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
        assert isinstance(nodes, list)
        ready = 0
        for node in nodes:
            for cond in node.get("status", {}).get("conditions", []):
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    ready += 1
        return ready >= self.nodes

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            for name, pid in self.pids.items():
                if not _alive(pid):
                    raise RuntimeError(
                        f"{name} exited while waiting for {what}; see {self.root}/logs/{name}.log:"
                        f"\n{_tail(self.root / 'logs' / f'{name}.log')}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"timed out waiting for {what}; logs in {self.root}/logs")

    def _save_state(self) -> None:
        (self.root / "state.json").write_text(json.dumps({"ports": self.ports,
                                                         "pids": self.pids}))

    @classmethod
    def load(cls, root: Path, alive_only: bool = True) -> LocalCluster | None:
        """The cluster a previous `python -m devcluster up` left running in `root`, if alive
        (with alive_only=False also one partly dead: what `down` must still stop)."""
        state_file = root / "state.json"
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        cluster = cls(root=root, ports=state["ports"], pids=state["pids"])
        if alive_only and not all(_alive(pid) for pid in cluster.pids.values()):
            return None
        cluster.tools = find_tools(build=False)
        return cluster


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
