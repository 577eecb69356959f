"""Finds the control plane's binaries, building them once per machine with build-tools.sh."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-tools.sh"


class _Binary:
    """A file of the tools' bin dir, looked up when read: a missing one says what builds it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, tools: Tools, owner: type | None = None) -> Path:
        path = tools.bin_dir / self.name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run {BUILD_SCRIPT}")
        return path


@dataclass(frozen=True)
class Tools:
    bin_dir: Path

    etcd = _Binary("etcd")
    kube_apiserver = _Binary("kube-apiserver")
    kube_controller_manager = _Binary("kube-controller-manager")
    kube_scheduler = _Binary("kube-scheduler")
    kubectl = _Binary("kubectl")
    kubelet = _Binary("kubelet")
    wabot_pause = _Binary("wabot-pause")
    kwok = _Binary("kwok")
    kwok_stages = _Binary("kwok-stages.yaml")
    helm = _Binary("helm")


def find_tools(build: bool = True) -> Tools:
    """Runs the build script (a no-op once everything is cached) and returns its bin dir.
    With build=False only an already complete cache is accepted."""
    if not shutil.which("go") and not build:
        raise FileNotFoundError("go is not installed")
    cmd = ["bash", str(BUILD_SCRIPT)]
    if not build:
        cmd.append("--check")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return Tools(Path(out.stdout.strip().splitlines()[-1]))
