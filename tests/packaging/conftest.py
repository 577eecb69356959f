"""Helpers for the packaging tests: helm, the chart, rendering, the monitoring CRDs."""

from __future__ import annotations

import functools
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kube
from tests.support import polling

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "wabot-operator"
ALL_VALUES = CHART / "ci" / "all-values.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MONITORING_CRDS = FIXTURES / "monitoring-crds.yaml"
# The Kubernetes version the chart is rendered for offline (helm template defaults to 1.20).
KUBE_VERSION = "1.34.0"


def helm_binary() -> str:
    """The helm built with the control plane's tools, else the one on PATH."""
    try:
        from devcluster.tools import find_tools

        return str(find_tools(build=False).helm)
    except (FileNotFoundError, subprocess.CalledProcessError):
        found = shutil.which("helm")
        if found is None:
            raise FileNotFoundError(
                "no helm: run devcluster/build-tools.sh (it builds helm with the control plane)"
            ) from None
        return found


def helm(*args: str, check: bool = True, kubeconfig: Path | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [helm_binary(), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr}")
    return out


def template_args(*values_files: Path, namespace: str = "wabot-system", release: str = "wabot",
                  sets: dict[str, str] | None = None) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", KUBE_VERSION]
    for f in values_files:
        args += ["-f", str(f)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render_text(*values_files: Path, **kwargs: Any) -> str:
    return helm(*template_args(*values_files, **kwargs)).stdout


def render(*values_files: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """The chart's objects (templates only; helm template leaves crds/ out by default)."""
    return [d for d in yaml.safe_load_all(render_text(*values_files, **kwargs)) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    hits = [o for o in objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {len(hits)}"
    return hits[0]


eventually = functools.partial(polling.eventually, timeout=90.0, interval=0.5)


@pytest.fixture(scope="session")
def monitoring_crds(kube: Kube) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule CRDs, installed only where missing: a
    cluster that has the real prometheus-operator keeps its own. Never deleted (cluster-wide
    objects other tests and users may rely on)."""
    docs = [d for d in yaml.safe_load_all(MONITORING_CRDS.read_text()) if d]
    missing = [d for d in docs
               if kube.kubectl("get", "crd", d["metadata"]["name"], check=False).returncode != 0]
    if missing:
        out = kube.kubectl("apply", "--server-side", "--field-manager=wabot-tests", "-f", "-",
                           input=yaml.safe_dump_all(missing), check=False)
        assert out.returncode == 0, out.stderr
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 *[f"crd/{d['metadata']['name']}" for d in docs])


@pytest.fixture
def make_namespace(kube: Kube) -> Iterator[Callable[[], str]]:
    """Fresh namespaces (restricted Pod Security), deleted after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        manifest = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "annotations": {"wabot.io/tenants": "*"}, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "wabot.io/test": "true"}},
        }
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        made.append(name)
        eventually(lambda: kube.kubectl("-n", name, "get", "serviceaccount", "default",
                                        check=False).returncode == 0,
                   timeout=30, what=f"default ServiceAccount in {name}")
        return name

    yield make
    for name in made:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def release(kube: Kube) -> Iterator[Callable[..., str]]:
    """`helm install` with a unique release name; uninstalled afterwards (that removes its
    cluster-scoped ClusterRoles and bindings; the CRDs stay, as Helm always leaves them). The
    gateway's API-key namespace, which the chart keeps on uninstall on purpose, is deleted too."""
    installed: list[tuple[str, str]] = []

    def install(namespace: str, *values: Path, sets: dict[str, str] | None = None) -> str:
        name = f"w{uuid.uuid4().hex[:8]}"
        args = ["install", name, str(CHART), "--namespace", namespace]
        for f in values:
            args += ["-f", str(f)]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        installed.append((name, namespace))
        helm(*args, kubeconfig=kube.kubeconfig)
        return name

    yield install
    for name, namespace in installed:
        helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "60s",
             kubeconfig=kube.kubeconfig, check=False)
        kube.kubectl("delete", "namespace", "--wait=false", "-l",
                     f"app.kubernetes.io/instance={name},app.kubernetes.io/component=gateway",
                     check=False)


def token_kubeconfig(kube: Kube, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that acts as the ServiceAccount (a token of its own), so the API server
    applies the chart's RBAC, not the admin's."""
    token = kube.kubectl("-n", namespace, "create", "token", service_account,
                         "--duration=1h").stdout.strip()
    admin = yaml.safe_load(kube.kubectl("config", "view", "--raw", "--flatten",
                                        "--minify").stdout)
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": service_account}}],
        "current-context": "c",
    }))
    return path


def can_i(kube: Kube, service_account: str, *args: str) -> bool:
    """`kubectl auth can-i ARGS --as system:serviceaccount:NS:NAME` on the real API server
    (service_account is "namespace/name")."""
    namespace, name = service_account.split("/")
    out = kube.kubectl("auth", "can-i", *args, "--as",
                       f"system:serviceaccount:{namespace}:{name}", check=False)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {out.stderr}"
    return answer == "yes"
