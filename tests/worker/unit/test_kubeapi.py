"""The worker's Kubernetes client without a cluster: configuration errors say what is wrong,
and nothing the worker imports loads the `kubernetes` package (the operator's client; ~9 MiB of
an idle worker's memory, docs/benchmarks/worker-memory.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from botworker.adapters.kube_client import ApiError, KubeClient, TokenSource
from botworker.adapters.kubeconfig import KubeConfigError

REPO = Path(__file__).resolve().parents[3]


def _kubeconfig(path: Path, user: dict[str, object], server: str = "https://127.0.0.1:1"
                ) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": server,
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def test_the_worker_never_imports_the_kubernetes_package() -> None:
    code = (
        "import pkgutil, importlib, sys, botworker, wabot\n"
        "for pkg in (botworker, wabot):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name.endswith(('__main__', '.migrations.env')):\n"
        "            continue\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exec_plugins_are_refused_clearly(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "k", {"exec": {"command": "aws"}})
    with pytest.raises(KubeConfigError, match="exec plugins are not supported"):
        KubeClient.from_kubeconfig(path)


def test_no_kubeconfig_names_where_it_looked(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(KubeConfigError, match="missing"):
        KubeClient.from_kubeconfig()


def test_kubeconfig_list_uses_the_first_existing_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _kubeconfig(tmp_path / "k", {"token": "t"}, server="https://10.0.0.1:6443/")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    assert KubeClient.from_kubeconfig().server == "https://10.0.0.1:6443"


def test_a_plain_http_server_is_refused(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "k", {"token": "t"}, server="http://127.0.0.1:8080")
    with pytest.raises(KubeConfigError, match="https"):
        KubeClient.from_kubeconfig(path)


def test_in_cluster_needs_the_service_environment(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        KubeClient.in_cluster(tmp_path, env={})


def test_token_file_is_reread_and_a_vanished_file_keeps_the_last_token(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("one\n")
    src = TokenSource(path=f, refresh_s=0.0)
    assert src.get() == "one"
    f.write_text("two")
    assert src.get() == "two"
    f.unlink()  # mid-rotation
    assert src.get() == "two"
    with pytest.raises(KubeConfigError, match="cannot read the token file"):
        TokenSource(path=tmp_path / "none").get()


def test_a_refused_connection_is_an_os_error_not_a_hang(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    api = KubeClient.from_kubeconfig(
        _kubeconfig(tmp_path / "k", {"token": "t"}, server=f"https://127.0.0.1:{port}"))
    with pytest.raises(OSError):
        api.request("GET", "/version", timeout=(1.0, 1.0))


def test_api_error_text_has_status_reason_and_message() -> None:
    err = ApiError(409, "Conflict", 'Operation cannot be fulfilled on leases "wabot-x"')
    assert str(err) == 'HTTP 409 Conflict: Operation cannot be fulfilled on leases "wabot-x"'
