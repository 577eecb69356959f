"""Session fixtures for the real parts: a Kubernetes API server and a PostgreSQL server.

Kubernetes: when `KUBECONFIG` is set, the tests use that cluster (yours, or one started with
`python -m devcluster up`); otherwise they start a local control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok) for the session and stop it at the end.
PostgreSQL: a throwaway server from Debian's packages, one per session; each test module that
asks gets its own database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devcluster.cluster import LocalCluster
from devcluster.postgres import PostgresServer

# The figures' session plumbing (tests/reliability and tests/security record figures), and
# the real node's session fixtures (tests/realnode and the chaos test run bots there).
pytest_plugins = ["tests.reliability.plugin", "tests.realnode.plugin"]

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"


@dataclass
class Kube:
    """The cluster under test. `local` is set only when the tests started it themselves."""

    kubeconfig: Path
    local: LocalCluster | None = None

    def api_client(self) -> object:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
                              check=check, capture_output=True, text=True, input=input)

    def apply_crds(self) -> None:
        files = sorted(CRDS.glob("*.yaml"))
        if not files:
            return
        for f in files:
            out = self.kubectl("apply", "--server-side", "--force-conflicts",
                               "--field-manager=wabot-tests", "-f", str(f), check=False)
            if out.returncode != 0:
                raise RuntimeError(f"applying {f.name} failed: {out.stderr.strip()}")
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     *[arg for f in files for arg in ("-f", str(f))])


def kubectl_binary() -> str:
    """The kubectl built with the control plane (same minor), else the one on PATH."""
    try:
        from devcluster.tools import find_tools

        return str(find_tools(build=False).kubectl)
    except (FileNotFoundError, subprocess.CalledProcessError):
        return "kubectl"


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    existing = os.environ.get("KUBECONFIG")
    if existing:
        k = Kube(Path(existing))
        k.apply_crds()
        yield k
        return
    cluster = LocalCluster(root=tmp_path_factory.mktemp("cluster")).start()
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)  # kopf and subprocesses follow it
    try:
        k = Kube(cluster.kubeconfig, local=cluster)
        k.apply_crds()
        yield k
    finally:
        os.environ.pop("KUBECONFIG", None)
        cluster.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace that enforces the Restricted Pod Security Standard."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    manifest = f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {name}
  annotations:
    wabot.io/tenants: "*"  # tests of tenancy set their own (tests/security)
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
    wabot.io/test: "true"
"""
    kube.kubectl("apply", "-f", "-", input=manifest)
    # Pods need the namespace's default ServiceAccount, made by the controller-manager.
    deadline = time.monotonic() + 30
    while kube.kubectl("-n", name, "get", "serviceaccount", "default",
                       check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {name}")
        time.sleep(0.2)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    # Not under pytest's tmp dir: another pytest session on the machine may reset that to 0700
    # and lock the `postgres` system user out of its own data directory.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="wabot-pg-")) / "pg").init().start()
    server.wait_ready()
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(server.root.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_database(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A database of this test module's own; returns its superuser DSN."""
    name = "t_" + request.module.__name__.rsplit(".", 1)[-1][:40] + "_" + uuid.uuid4().hex[:6]
    return postgres.create_database(name)
