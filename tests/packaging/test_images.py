"""The container images, built with podman from the real Dockerfiles and run the way Kubernetes
runs them: read-only root filesystem, uid 10001, every capability dropped, /tmp a tmpfs and the
auth directory a volume.

Building needs podman, runc and debootstrap (`apt-get install -y podman runc debootstrap`) and
the package registries (Debian's, PyPI). The base image (Debian bookworm + python3, the stand-in
for python:3.11-slim-bookworm where no image can be pulled) is built once per machine by
images/build.sh and reused while `podman image exists` says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Kube
from tests.packaging.conftest import REPO, eventually
from tests.support.net import free_port

pytestmark = pytest.mark.slow

BUILD = REPO / "images" / "build.sh"
TAG = "test"
WORKER = f"localhost/wabot-worker:{TAG}"
OPERATOR = f"localhost/wabot-operator:{TAG}"
RUNTIME = ["--runtime", "/usr/sbin/runc", "--ulimit", "nofile=1024:1024",
           "--ulimit", "nproc=4096:4096"]
# How Kubernetes runs the containers (operator/bot-templates/pod.yaml and the chart's Deployment).
HARDENED = ["--read-only", "--user", "10001:10001", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]
# Ceilings that keep "small" honest; measured sizes are printed by test_image_sizes.
MAX_SIZE_MB = {WORKER: 700, OPERATOR: 260}


def podman(*args: str, check: bool = True, timeout: float = 120,
           ) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({out.returncode}):\n"
                             f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def images() -> dict[str, float]:
    """Build both images (and the base, if missing); returns seconds each build took."""
    missing = [tool for tool in ("podman", "debootstrap") if shutil.which(tool) is None]
    if not Path("/usr/sbin/runc").exists():
        missing.append("runc")
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y podman runc debootstrap",
                    pytrace=False)
    timings: dict[str, float] = {}
    for target in ("base", "worker", "operator"):
        started = time.monotonic()
        argv = ["bash", str(BUILD), target] + ([] if target == "base" else [TAG])
        out = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
        if out.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({out.returncode}):\n"
                        f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}", pytrace=False)
        timings[target] = time.monotonic() - started
    return timings


@pytest.fixture
def container_names() -> Iterator[Callable[[str], str]]:
    names: list[str] = []

    def make(prefix: str) -> str:
        names.append(f"wabot-test-{prefix}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        podman("rm", "-f", "-t", "5", name, check=False)


def size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout) / 1e6


def test_image_sizes(images: dict[str, float], capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print()
        for image in (WORKER, OPERATOR):
            role = "worker" if image == WORKER else "operator"
            print(f"    {image}: {size_mb(image):.1f} MB (build {images[role]:.0f} s)")
        base = "localhost/wabot-base:bookworm"
        print(f"    {base}: {size_mb(base):.1f} MB (build or reuse {images['base']:.0f} s)")
    for image, ceiling in MAX_SIZE_MB.items():
        assert size_mb(image) < ceiling, f"{image} grew past {ceiling} MB"


@pytest.mark.parametrize("image", [WORKER, OPERATOR])
def test_image_runs_as_non_root_without_pip(images: dict[str, float], image: str) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["wabot"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["ROLE"] == ("worker" if image == WORKER else "operator")
    assert "PIP_CERT" not in env  # the build-time CA never reaches the image
    out = podman("run", "--rm", *RUNTIME, *HARDENED, "--entrypoint", "sh", image, "-c",
                 "id -u; id -g; command -v pip pip3 || echo no-pip; "
                 "python3 -c 'import pip' 2>/dev/null && echo has-pip-module || echo no-pip-module;"
                 " touch /opt/venv/x 2>/dev/null && echo writable || echo read-only")
    assert out.stdout.split() == ["10001", "10001", "no-pip", "no-pip-module", "read-only"]


def test_worker_image_makes_what_neonize_asks_of_ffmpeg(images: dict[str, float]) -> None:
    """Hardened as in a pod (uid 10001, read-only root, /tmp the only place to write): neonize
    finds ffmpeg and ffprobe, and they make a voice note (Ogg Opus), a video thumbnail and a
    WebP sticker, as the worker's media sends do (the image drops Mesa's drivers, so this is
    what proves nothing it needs went with them)."""
    script = (
        "from neonize.utils.ffmpeg import check_ffmpeg_available as check; "
        "import subprocess as sp, os; os.chdir('/tmp'); assert check(); "
        "run = lambda *a: sp.run(['ffmpeg', '-v', 'error', *a], check=True); "
        "run('-f', 'lavfi', '-i', 'sine=duration=1', '-c:a', 'libopus', 'v.ogg'); "
        "run('-f', 'lavfi', '-i', 'testsrc=duration=1:size=64x48:rate=5', '-pix_fmt', "
        "'yuv420p', 'v.mp4'); "
        "run('-i', 'v.mp4', '-vframes', '1', 't.jpg'); "
        "run('-i', 't.jpg', '-c:v', 'libwebp', 's.webp'); "
        "d = sp.run(['ffprobe', '-v', 'error', '-show_entries', 'format=duration', '-of', "
        "'csv=p=0', 'v.ogg'], check=True, capture_output=True, text=True).stdout; "
        "print(round(float(d)), *(os.path.getsize(f) > 0 for f in "
        "('v.ogg', 'v.mp4', 't.jpg', 's.webp')))")
    out = podman("run", "--rm", *RUNTIME, *HARDENED, "--entrypoint", "python3", WORKER,
                 "-c", script)
    assert out.stdout.split() == ["1", "True", "True", "True", "True"], out.stderr


def test_worker_without_bot_id_fails_with_one_clear_line(images: dict[str, float]) -> None:
    out = podman("run", "--rm", *RUNTIME, *HARDENED, "-e", "SERVER_NAME=acme", WORKER,
                 check=False)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "BOT_ID" in lines[0] and "required" in lines[0]
    assert "Traceback" not in out.stderr


def test_worker_serves_livez_read_only_and_writes_only_its_volume(
        images: dict[str, float], container_names: Callable[[str], str], tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    auth.mkdir()
    shutil.chown(auth, 10001, 10001)
    port = free_port()
    name = container_names("worker")
    podman("run", "-d", "--name", name, *RUNTIME, *HARDENED, "--network=host",
           "-v", f"{auth}:/var/lib/wabot:rw", "-e", "BOT_ID=demo", "-e", "SERVER_NAME=acme",
           "-e", f"HTTP_PORT={port}", "-e", "HTTP_HOST=127.0.0.1", WORKER)

    def livez() -> bool:
        running = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if running != "true":
            logs = podman("logs", name, check=False)
            raise AssertionError(f"worker exited:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
        try:
            return http_get(f"http://127.0.0.1:{port}/livez")[0] == 200
        except OSError:
            return False

    eventually(livez, timeout=60, what="worker /livez")
    # WhatsApp is unreachable here: alive, not ready, and the metrics say why.
    assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503
    status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert 'wabot_connected{bot="demo",server_name="acme"} 0.0' in metrics
    # The session lives on the volume, in the seed's layout.
    assert (auth / "auth" / "acme" / "bot_demo").is_dir()
    # SIGTERM: drain, disconnect, exit 0.
    podman("stop", "-t", "30", name)
    code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert code == "0", podman("logs", name, check=False).stderr[-3000:]


def test_worker_image_runs_the_monolith_read_only(
        images: dict[str, float], container_names: Callable[[str], str], tmp_path: Path) -> None:
    """Tier 1 from docs/tiers.md: the worker image with ROLE=monolith and a bots file, still on a
    read-only root filesystem as uid 10001."""
    auth = tmp_path / "auth"
    auth.mkdir()
    shutil.chown(auth, 10001, 10001)
    bots = tmp_path / "bots.yaml"
    bots.write_text(yaml.safe_dump_all([
        {"apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot",
         "metadata": {"name": name}, "spec": {"serverName": "acme"}}
        for name in ("alpha", "beta")]))
    bots.chmod(0o644)
    port = free_port()
    name = container_names("monolith")
    podman("run", "-d", "--name", name, *RUNTIME, *HARDENED, "--network=host",
           "-v", f"{auth}:/var/lib/wabot:rw", "-v", f"{bots}:/etc/wabot/bots.yaml:ro",
           "-e", "ROLE=monolith", "-e", "WABOT_BOTS_FILE=/etc/wabot/bots.yaml",
           "-e", "WABOT_HTTP_HOST=127.0.0.1", "-e", f"WABOT_HTTP_PORT={port}", WORKER)

    def bots_running() -> list[str] | None:
        if podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            logs = podman("logs", name, check=False)
            raise AssertionError(f"monolith exited:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/bots")
        except OSError:
            return None
        if status != 200:
            return None
        listed = json.loads(body)
        items = listed if isinstance(listed, list) else listed.get("bots", listed.get("items"))
        live = sorted(b["name"] for b in items if b.get("live"))
        return live if live == ["alpha", "beta"] else None

    eventually(bots_running, timeout=90, what="both bots running (live) under the monolith")
    assert http_get(f"http://127.0.0.1:{port}/livez")[0] == 200
    for bot in ("alpha", "beta"):
        assert (auth / "auth" / "acme" / f"bot_{bot}").is_dir()
    podman("stop", "-t", "60", name)


@pytest.mark.cluster
def test_operator_image_answers_liveness_and_runs_a_bot(
        images: dict[str, float], kube: Kube, namespace: str,
        container_names: Callable[[str], str], tmp_path: Path) -> None:
    """The operator image against the test cluster: liveness, metrics, and a bot's pod created
    from the templates baked into the image (/etc/wabot/bot-templates)."""
    flat = kube.kubectl("config", "view", "--raw", "--flatten", "--minify").stdout
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(flat)
    kubeconfig.chmod(0o644)
    health, metrics = free_port(), free_port()
    name = container_names("operator")
    podman("run", "-d", "--name", name, *RUNTIME, *HARDENED, "--network=host",
           "-v", f"{kubeconfig}:/etc/wabot/kubeconfig:ro", "-e", "KUBECONFIG=/etc/wabot/kubeconfig",
           "-e", f"WABOT_OPERATOR_NAMESPACES={namespace}",
           "-e", "WABOT_OPERATOR_STANDALONE=true",
           "-e", f"WABOT_OPERATOR_HEALTH_PORT={health}",
           "-e", f"WABOT_OPERATOR_METRICS_PORT={metrics}",
           "-e", "WABOT_OPERATOR_WORKER_IMAGE=registry.invalid/wabot-worker:test",
           OPERATOR)
    try:
        def healthy() -> bool:
            if podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
                logs = podman("logs", name, check=False)
                raise AssertionError(f"operator exited:\n{logs.stdout[-3000:]}"
                                     f"{logs.stderr[-3000:]}")
            try:
                return http_get(f"http://127.0.0.1:{health}/healthz")[0] == 200
            except OSError:
                return False

        eventually(healthy, timeout=60, what="operator /healthz")
        status, text = http_get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200 and "wabot_operator_reconcile_total" in text

        bot = {"apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot",
               "metadata": {"name": "imagetest", "namespace": namespace},
               "spec": {"serverName": "acme"}}
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(bot))
        eventually(lambda: kube.kubectl("-n", namespace, "get", "pod", "wabot-imagetest",
                                        check=False).returncode == 0,
                   timeout=60, what="bot pod created by the operator image")
        kube.kubectl("-n", namespace, "delete", "whatsappbot", "imagetest", "--wait=true",
                     "--timeout=60s")
    finally:
        kube.kubectl("-n", namespace, "delete", "whatsappbot", "--all", "--wait=true",
                     "--timeout=60s", check=False)
        podman("stop", "-t", "30", name, check=False)
    code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert code == "0", podman("logs", name, check=False).stderr[-3000:]


def test_operator_image_runs_the_gateway(
        images: dict[str, float], kube: Kube, namespace: str,
        container_names: Callable[[str], str], tmp_path: Path) -> None:
    """ROLE=gateway from the operator image (what the chart deploys with gateway.enabled):
    read-only, non-root, it serves its OpenAPI document and refuses a request without a key."""
    flat = kube.kubectl("config", "view", "--raw", "--flatten", "--minify").stdout
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(flat)
    kubeconfig.chmod(0o644)
    port = free_port()
    name = container_names("gateway")
    podman("run", "-d", "--name", name, *RUNTIME, *HARDENED, "--network=host",
           "-v", f"{kubeconfig}:/etc/wabot/kubeconfig:ro", "-e", "KUBECONFIG=/etc/wabot/kubeconfig",
           "-e", "ROLE=gateway", "-e", f"WABOT_GATEWAY_PORT={port}",
           "-e", "WABOT_GATEWAY_HOST=127.0.0.1",
           "-e", f"WABOT_GATEWAY_KEYS_NAMESPACE={namespace}", OPERATOR)
    try:
        def up() -> bool:
            if podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
                logs = podman("logs", name, check=False)
                raise AssertionError(f"gateway exited:\n{logs.stdout[-3000:]}"
                                     f"{logs.stderr[-3000:]}")
            try:
                return http_get(f"http://127.0.0.1:{port}/livez")[0] == 200
            except OSError:
                return False

        eventually(up, timeout=60, what="gateway /livez")
        status, text = http_get(f"http://127.0.0.1:{port}/openapi.yaml")
        assert status == 200
        assert text == (REPO / "gateway" / "openapi.yaml").read_text()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/bots/{namespace}/nobody/messages", method="POST",
            data=b'{"to": "15550001111", "text": "hi"}')
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401
    finally:
        podman("stop", "-t", "15", name, check=False)
