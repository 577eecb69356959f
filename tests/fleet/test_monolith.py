"""`ROLE=monolith` with real workers (`python -m wabot_cli worker`, no WhatsApp reachable: each
worker keeps redialling with backoff while its /livez answers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port

from .helpers import (
    assert_one_declaration_per_family,
    http_get,
    http_json,
    kill9,
    pid_alive,
    wait_for,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOKEN = "monolith-test-token-0123456789"


def bots_yaml(*names: str, tenant: str = "acme", extra: str = "") -> str:
    return "".join(
        f"""---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {{name: {n}}}
spec:
  serverName: {tenant}
  commands: {{prefix: "!"}}
{extra}"""
        for n in names
    )


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    auth: Path
    bots_file: Path
    log: Path

    def bots(self) -> dict[str, dict[str, Any]]:
        code, body = http_json(self.url + "/bots", TOKEN)
        assert code == 200, body
        return {b["name"]: b for b in body}

    def live_pid(self, name: str, other_than: int | None = None) -> int | None:
        b = self.bots().get(name)
        if b and b["state"] == "running" and b["live"] and b["pid"] != other_than:
            return int(b["pid"])
        return None


def start_monolith(tmp: Path, text: str, token: str | None = TOKEN,
                   **env: str) -> Running:
    bots = tmp / "bots.yaml"
    bots.write_text(text)
    port = free_port()
    full = {**os.environ, "ROLE": "monolith", "WABOT_BOTS_FILE": str(bots),
            "AUTH_DIR": str(tmp / "data"), "WABOT_HTTP_HOST": "127.0.0.1",
            "WABOT_HTTP_PORT": str(port), "WABOT_STOP_GRACE_SECONDS": "20",
            "PYTHONPATH": str(REPO), **env}
    if token:
        full["WABOT_CONTROLLER_TOKEN"] = token
    log = tmp / "monolith.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wabot_cli"], env=full, cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT)
    r = Running(proc, f"http://127.0.0.1:{port}", tmp / "data", bots, log)
    wait_for("monolith http", lambda: proc.poll() is not None or
             http_get(r.url + "/livez")[0] == 200, timeout=30)
    assert proc.poll() is None, log.read_text()[-3000:]
    return r


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Running]:
    r = start_monolith(tmp_path, bots_yaml("alpha", "beta") + bots_yaml("gamma",
                                                                       tenant="globex"))
    try:
        yield r
    finally:
        stop_monolith(r)


def stop_monolith(r: Running) -> None:
    if r.proc.poll() is None:
        r.proc.send_signal(signal.SIGTERM)
        try:
            r.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()


def test_one_bots_crash_stays_contained(three: Running) -> None:
    """kill -9 one bot's worker: the others keep their pids, the crashed one comes back."""
    pids = {n: wait_for(f"{n} live", lambda n=n: three.live_pid(n), timeout=90)  # type: ignore[misc]
            for n in ("alpha", "beta", "gamma")}
    assert len(set(pids.values())) == 3
    bots = three.bots()
    assert {b["serverName"] for b in bots.values()} == {"acme", "globex"}
    assert len({b["port"] for b in bots.values()}) == 3
    # Each bot's session lives where the seed puts it, under the shared auth root.
    for name, tenant in (("alpha", "acme"), ("beta", "acme"), ("gamma", "globex")):
        assert (three.auth / "auth" / tenant / f"bot_{name}").is_dir()

    kill9(pids["beta"])
    new_beta = wait_for("beta restarted",
                        lambda: three.live_pid("beta", other_than=pids["beta"]), timeout=90)
    bots = three.bots()
    assert bots["beta"]["restarts"] == 1 and bots["beta"]["lastExitCode"] == -9
    for name in ("alpha", "gamma"):
        assert bots[name]["pid"] == pids[name] and bots[name]["restarts"] == 0
        assert pid_alive(pids[name])
    assert three.proc.poll() is None

    # The metrics say so too, and federate each bot's own series.
    code, body = http_get(three.url + "/metrics", TOKEN)  # with a token set, it needs it
    assert code == 200
    assert_one_declaration_per_family(body.decode())
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    restarts = {s.labels["bot"]: s.value for s in fams["wabot_fleet_bot_restarts"].samples
                if s.name.endswith("_total")}
    assert restarts == {"alpha": 0, "beta": 1, "gamma": 0}
    running = [s for s in fams["wabot_fleet_bots"].samples if s.labels["state"] == "running"]
    assert running[0].value == 3
    info = {(s.labels["bot"], s.labels["server_name"])
            for s in fams["wabot_worker_info"].samples}
    assert info == {("alpha", "acme"), ("beta", "acme"), ("gamma", "globex")}
    rss = {s.labels["bot"] for s in fams["process_resident_memory_bytes"].samples}
    assert rss == {"alpha", "beta", "gamma"}  # labels added where the worker had none

    stop_monolith(three)
    assert three.proc.returncode == 0
    for pid in (pids["alpha"], new_beta, pids["gamma"]):
        assert not pid_alive(pid)


def test_control_api_needs_the_token(three: Running) -> None:
    wait_for("alpha live", lambda: three.live_pid("alpha"), timeout=90)
    assert http_get(three.url + "/bots")[0] == 401
    assert http_get(three.url + "/bots", "wrong-token-wrong-token")[0] == 401
    assert http_get(three.url + "/bots/alpha/stop", method="POST")[0] == 401
    assert http_get(three.url + "/bots/nope/stop", TOKEN, method="POST")[0] == 404
    assert http_get(three.url + "/livez")[0] == 200  # health stays open for probes
    code, _ = http_get(three.url + "/bots/alpha/stop", TOKEN, method="POST")
    assert code == 202
    wait_for("alpha stopped", lambda: three.bots()["alpha"]["state"] == "stopped")


def test_reload_adds_and_removes_bots(three: Running) -> None:
    gamma = wait_for("gamma live", lambda: three.live_pid("gamma"), timeout=90)
    three.bots_file.write_text(bots_yaml("alpha", "delta") + bots_yaml("gamma",
                                                                      tenant="globex"))
    three.proc.send_signal(signal.SIGHUP)
    wait_for("delta live", lambda: three.live_pid("delta"), timeout=90)
    wait_for("beta gone", lambda: "beta" not in three.bots())
    assert three.bots()["gamma"]["pid"] == gamma


def test_without_a_token_the_list_is_open_and_control_is_off(tmp_path: Path) -> None:
    r = start_monolith(tmp_path, bots_yaml("solo"), token=None)
    try:
        code, body = http_json(r.url + "/bots")
        assert code == 200 and body[0]["name"] == "solo"
        assert http_get(r.url + "/bots/solo/stop", method="POST")[0] == 403
    finally:
        stop_monolith(r)


def test_a_bad_bots_file_fails_fast_with_the_place(tmp_path: Path) -> None:
    bots = tmp_path / "bots.yaml"
    bots.write_text(bots_yaml("ok") + bots_yaml("bad", extra="  rateLimit: {perBot: 1}\n"))
    proc = subprocess.run(
        [sys.executable, "-m", "wabot_cli", "monolith", "--bots", str(bots)],
        env={**os.environ, "PYTHONPATH": str(REPO), "AUTH_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "document 2" in proc.stderr and "spec.rateLimit.perBot" in proc.stderr


def test_role_defaults_to_monolith(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ROLE", "DEPLOYMENT_ROLE",
                                                            "WABOT_BOTS_FILE",
                                                            "WABOT_BOTS_DSN")}
    proc = subprocess.run([sys.executable, "-m", "wabot_cli"], env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("wabot monolith: no bots")
