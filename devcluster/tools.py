"""Finds the control plane's binaries, building them once per machine with build-tools.sh."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-tools.sh"


@dataclass(frozen=True)
class Tools:
    bin_dir: Path

    def _get(self, name: str) -> Path:
        path = self.bin_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run {BUILD_SCRIPT}")
        return path

    @property
    def etcd(self) -> Path:
        return self._get("etcd")

    @property
    def kube_apiserver(self) -> Path:
        return self._get("kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self._get("kube-controller-manager")

    @property
    def kube_scheduler(self) -> Path:
        return self._get("kube-scheduler")

    @property
    def kubectl(self) -> Path:
        return self._get("kubectl")

    @property
    def kubelet(self) -> Path:
        return self._get("kubelet")

    @property
    def wabot_pause(self) -> Path:
        return self._get("wabot-pause")

    @property
    def kwok(self) -> Path:
        return self._get("kwok")

    @property
    def kwok_stages(self) -> Path:
        return self._get("kwok-stages.yaml")

    @property
    def helm(self) -> Path:
        return self._get("helm")


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
