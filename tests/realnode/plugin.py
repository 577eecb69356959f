"""The real node's session fixtures, for every test of the tree that runs a bot there
(tests/realnode, and the chaos test's share of bots in tests/reliability). Loaded by
tests/conftest.py, so one session has one real node and one worker image build however many
directories ask for it.

`real_node` is the node of the cluster under test: the one `python -m devcluster up` started
when KUBECONFIG names that cluster, else one started for this session beside the session's
control plane (and stopped at its end). The worker image is built by images/build.sh (podman's
layer cache makes an unchanged tree a few seconds) and imported once per build. A machine
without containerd fails here with what to install: these tests are part of the suite.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from devcluster.cluster import LocalCluster
from devcluster.images import load_image
from devcluster.node import NODE_LABEL, STORAGE_CLASS, RealNode, missing_prerequisites
from tests.conftest import REPO, Kube

WORKER_IMAGE = "localhost/wabot-worker:test"  # the tag tests/packaging builds too
# What places a bot on the real node: its label and taint, and its local volumes.
PLACEMENT = {
    "nodeSelector": {NODE_LABEL: "true"},
    "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
    "storage": {"storageClassName": STORAGE_CLASS},
}
# The operator's settings that let a bot ask for that placement. The operator's pod template
# pulls IfNotPresent, which the node's imported image satisfies (there is no registry).
OPERATOR_ENV = {
    "WABOT_OPERATOR_WORKER_IMAGE": WORKER_IMAGE,
    "WABOT_OPERATOR_ALLOWED_TOLERATIONS": NODE_LABEL,
    "WABOT_OPERATOR_ALLOWED_NODE_SELECTOR_KEYS": f"{NODE_LABEL},kubernetes.io/hostname",
}


@pytest.fixture(scope="session")
def worker_image() -> str:
    argv = ["bash", str(REPO / "images" / "build.sh"), "worker", "test"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-4000:]}",
                    pytrace=False)
    return WORKER_IMAGE


@pytest.fixture(scope="session")
def real_node(kube: Kube, worker_image: str) -> Iterator[RealNode]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail(f"the real node needs {', '.join(missing)}: run scripts/setup.sh",
                    pytrace=False)
    if kube.local is not None:
        node = RealNode(kube.local).start()
        try:
            load_image(node, worker_image)
            yield node
        finally:
            node.stop()
        return
    running = LocalCluster.load(kube.kubeconfig.parent)
    shared = RealNode.load(running) if running is not None else None
    if shared is None or not shared.alive():
        pytest.fail(f"KUBECONFIG={kube.kubeconfig} has no running real node: "
                    "python3 -m devcluster up starts one", pytrace=False)
    load_image(shared, worker_image)
    yield shared
