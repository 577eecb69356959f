"""The worker as a process, the way Kubernetes runs it: environment in, exit code out."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port, http_status

from .conftest import wait_for, worker_process_env


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botworker", *args], env=worker_process_env(tmp_path, **env),
        capture_output=True, text=True, timeout=60,
    )


def test_missing_bot_id_is_one_clear_line(tmp_path: Path) -> None:
    proc = _run(tmp_path, SERVER_NAME="tenant-a")
    assert proc.returncode == 2
    assert proc.stderr == "wabot worker: BOT_ID is required in worker mode\n"
    assert not (tmp_path / "auth").exists()


def test_missing_server_name_is_one_clear_line(tmp_path: Path) -> None:
    proc = _run(tmp_path, BOT_ID="bot-a")
    assert proc.returncode == 2
    assert proc.stderr == "wabot worker: SERVER_NAME is required in worker mode\n"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BOT_ID": "../../etc"}, "BOT_ID='../../etc' is not valid"),
        ({"HTTP_PORT": "http"}, "HTTP_PORT"),
        ({"WABOT_SPEC_SOURCE": "etcd"}, "WABOT_SPEC_SOURCE must be"),
        ({"WABOT_SPEC_SOURCE": "file:/nonexistent/bot.yaml"}, "cannot read the spec file"),
    ],
)
def test_config_errors_are_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    base = {"BOT_ID": "bot-a", "SERVER_NAME": "tenant-a"}
    proc = _run(tmp_path, **{**base, **env})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wabot worker: ") and needle in lines[0]


def test_a_spec_file_for_another_tenant_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "bot.yaml"
    spec.write_text("serverName: tenant-b\nbotId: bot-a\n")
    proc = _run(tmp_path, BOT_ID="bot-a", SERVER_NAME="tenant-a",
                WABOT_SPEC_SOURCE=f"file:{spec}")
    assert proc.returncode == 2
    assert "serverName 'tenant-b' is not SERVER_NAME 'tenant-a'" in proc.stderr


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    spec = tmp_path / "bot.yaml"
    spec.write_text("serverName: tenant-a\nbotId: bot-a\ncommands: {prefix: '#'}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botworker"],
        env=worker_process_env(
            tmp_path, BOT_ID="bot-a", SERVER_NAME="tenant-a", HTTP_PORT=str(port),
            HTTP_HOST="127.0.0.1", WABOT_SPEC_SOURCE=f"file:{spec}",
            WABOT_SHUTDOWN_TIMEOUT_SECONDS="10"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/livez") == 200, timeout=60,
                 what="/livez")
        yield proc, port, tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_stops_cleanly_and_exits_0(
    running: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, tmp_path = running
    assert http_status(f"http://127.0.0.1:{port}/readyz") == 503  # no WhatsApp here
    session_dir = tmp_path / "auth" / "auth" / "tenant-a" / "bot_bot-a"
    assert session_dir.is_dir() and (session_dir.stat().st_mode & 0o777) == 0o700
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - started < 10
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert all(r["bot"] == "bot-a" and r["server_name"] == "tenant-a" for r in records)
    stopped = [r for r in records if r["msg"] == "worker stopped"]
    assert stopped and stopped[0]["clean"] is True
    assert any(r["msg"] == "connection state changed" and r["to"] == "Stopped" for r in records)


def test_idle_worker_memory(running: tuple[subprocess.Popen[str], int, Path]) -> None:
    """The budget is <= 90 MB for an idle bot (a Baileys process is ~110 MB); this guards
    against an eager import (SQLAlchemy, Alembic, aiohttp) creeping back into start-up."""
    proc, _port, _ = running
    time.sleep(3)  # let the first dial attempts and the migration child come and go
    with open(f"/proc/{proc.pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    with open(f"/proc/{proc.pid}/maps") as f:
        maps = f.read()
    assert "sqlalchemy" not in maps and "alembic" not in maps
    assert rss_kb < 95 * 1024, f"idle worker RSS {rss_kb / 1024:.1f} MB"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def test_the_role_switch_runs_the_worker(tmp_path: Path) -> None:
    """`ROLE=worker wabot` (the image's entry point) reaches this worker's config check."""
    env = worker_process_env(tmp_path, ROLE="worker", SERVER_NAME="tenant-a")
    proc = subprocess.run([sys.executable, "-m", "wabot_cli"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "wabot worker: BOT_ID is required in worker mode"


def test_python_m_wabot_is_the_wabot_command(tmp_path: Path) -> None:
    """`python -m wabot` (an alias older command lines use) runs the `wabot` command with the
    arguments and the interpreter options it was given (here -X importtime, whose report shows
    the command line being imported by the interpreter that runs it)."""
    env = worker_process_env(tmp_path, SERVER_NAME="tenant-a")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "wabot", "worker"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[-1] == "wabot worker: BOT_ID is required in worker mode"
    assert any(line.startswith("import time:") and line.split("|")[-1].strip()
               == "wabot_cli.commands" for line in lines), proc.stderr[-2000:]


def test_no_secret_reaches_the_logs(tmp_path: Path) -> None:
    """The webhook signing key, the send API's token and the proxy's password, all in use in a
    real worker process at LOG_LEVEL=DEBUG (whatsmeow's own debug lines included): none of
    them, nor the proxy's Basic credentials, appears in anything the process prints."""
    import base64

    from .receiver import Receiver
    from .test_integrations import FakeProxy

    key, token, password = "whsec-LOGSCAN-8c1f", "api-token-LOGSCAN-0123456789", "pw-LOGSCAN-77"
    receiver = Receiver(key.encode()).start()
    proxy = FakeProxy()
    port = free_port()
    spec = tmp_path / "bot.yaml"
    spec.write_text("serverName: tenant-a\nbotId: bot-a\nwebhook:\n"
                    f"  url: {receiver.url}\n  secretRef: {{name: hook}}\n"
                    "  events: [connection]\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botworker"],
        env=worker_process_env(
            tmp_path, BOT_ID="bot-a", SERVER_NAME="tenant-a", HTTP_PORT=str(port),
            HTTP_HOST="127.0.0.1", WABOT_SPEC_SOURCE=f"file:{spec}", LOG_LEVEL="DEBUG",
            WABOT_WEBHOOK_SECRET=key, WABOT_API_TOKEN=token,
            WABOT_PROXY_URL=f"http://alice:{password}@127.0.0.1:{proxy.port}",
            WABOT_WEBHOOK_ALLOW_CIDRS="127.0.0.1/32",  # the receiver's, as an admin would
            WABOT_SHUTDOWN_TIMEOUT_SECONDS="10"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/livez") == 200, timeout=60,
                 what="/livez")
        wait_for(lambda: proxy.received, timeout=60, what="a dial through the proxy")
        wait_for(lambda: receiver.accepted(), timeout=30, what="a signed delivery")
        assert all(d.signature_ok for d in receiver.accepted())
        for bearer in (token, "wrong-" + token):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/messages", method="POST",
                data=json.dumps({"to": "15550001111", "text": "hi"}).encode(),
                headers={"Authorization": f"Bearer {bearer}"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code in (401, 503)
        proc.send_signal(signal.SIGTERM)
        out, err_text = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        receiver.stop()
        proxy.close()
    printed = out + err_text
    assert "connecting to WhatsApp" in printed  # the logs are there, and DEBUG
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    for secret in (key, token, password, basic):
        assert secret not in printed, f"{secret[:8]}... leaked into the worker's output"
