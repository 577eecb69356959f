"""`ROLE=controller` with real worker groups and real workers: a dead group is restarted alone,
a rollout goes one group at a time, the API wants its token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.sharding import group_names, owner
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
TOKEN = "controller-test-token-0123456789"
TENANT = "acme"


def pick_bots(per_group: int, groups: int) -> dict[str, list[str]]:
    """Bot names such that every group owns `per_group` of them (the same pure function the
    controller uses decides)."""
    out: dict[str, list[str]] = {g: [] for g in group_names(groups)}
    i = 0
    while any(len(v) < per_group for v in out.values()):
        name = f"bot{i}"
        g = owner(f"{TENANT}/{name}", group_names(groups))
        if len(out[g]) < per_group:
            out[g].append(name)
        i += 1
    return out


def bots_yaml(names: list[str]) -> str:
    return "".join(f"""---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {{name: {n}}}
spec: {{serverName: {TENANT}}}
""" for n in names)


@dataclass
class Ctl:
    proc: subprocess.Popen[bytes]
    url: str
    layout: dict[str, list[str]]

    def get(self, path: str) -> Any:
        code, body = http_json(self.url + path, TOKEN)
        assert code == 200, (path, code, body)
        return body

    def bots(self) -> dict[str, dict[str, Any]]:
        return {b["name"]: b for b in self.get("/bots")}

    def groups(self) -> dict[str, dict[str, Any]]:
        return {g["name"]: g for g in self.get("/groups")}

    def all_live(self) -> dict[str, dict[str, Any]] | None:
        bots = self.bots()
        ok = all(b["state"] == "running" and b["live"] for b in bots.values() if b["desired"])
        return bots if ok else None


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[Ctl]:
    layout = pick_bots(2, 2)
    bots = tmp_path / "bots.yaml"
    bots.write_text(bots_yaml([n for names in layout.values() for n in names]))
    port = free_port()
    env = {**os.environ, "ROLE": "controller", "WABOT_BOTS_FILE": str(bots),
           "AUTH_DIR": str(tmp_path / "data"), "WABOT_HTTP_HOST": "127.0.0.1",
           "WABOT_HTTP_PORT": str(port), "WABOT_CONTROLLER_TOKEN": TOKEN,
           "WABOT_WORKER_GROUPS": "2", "WABOT_STOP_GRACE_SECONDS": "20",
           "PYTHONPATH": str(REPO)}
    with (tmp_path / "controller.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wabot_cli"], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    c = Ctl(proc, f"http://127.0.0.1:{port}", layout)
    try:
        wait_for("controller http", lambda: proc.poll() is not None or
                 http_get(c.url + "/livez")[0] == 200, timeout=30)
        assert proc.poll() is None, (tmp_path / "controller.log").read_text()[-3000:]
        wait_for("every bot live", c.all_live, timeout=120, interval=0.5)
        yield c
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_api_requires_the_token(ctl: Ctl) -> None:
    for method, path in (("GET", "/bots"), ("POST", "/bots/bot0/restart"),
                         ("POST", "/groups/rollout"), ("GET", "/groups")):
        assert http_get(ctl.url + path, method=method)[0] == 401
        assert http_get(ctl.url + path, "x" * len(TOKEN), method=method)[0] == 401
    assert http_get(ctl.url + "/bots/no-such-bot/restart", TOKEN, method="POST")[0] == 404
    assert http_get(ctl.url + "/bots/no-such-bot", TOKEN)[0] == 404
    assert http_get(ctl.url + "/livez")[0] == 200


def test_each_group_owns_its_subset_one_process_per_bot(ctl: Ctl) -> None:
    bots = ctl.bots()
    groups = ctl.groups()
    for group, names in ctl.layout.items():
        assert groups[group]["bots"] == len(names)
        for n in names:
            assert bots[n]["group"] == group
    assert len({b["pid"] for b in bots.values()}) == 4  # four worker processes
    group_pids = {g["pid"] for g in groups.values()}
    for b in bots.values():  # each worker is a child of its own group's process
        ppid = int(Path(f"/proc/{b['pid']}/stat").read_text().split(")")[1].split()[1])
        assert ppid == groups[b["group"]]["pid"] and ppid in group_pids
    # One scrape of the controller covers the groups and every bot, labelled by group.
    code, body = http_get(ctl.url + "/metrics", TOKEN)
    assert code == 200
    text = body.decode()
    assert_one_declaration_per_family(text)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    info = {(s.labels["bot"], s.labels["group"]) for s in fams["wabot_worker_info"].samples}
    assert info == {(n, g) for g, names in ctl.layout.items() for n in names}
    restarts = {s.labels["group"] for s in fams["wabot_fleet_group_restarts"].samples}
    assert restarts == {"group-0", "group-1"}


def test_a_dead_group_is_restarted_without_touching_the_other(ctl: Ctl) -> None:
    bots, groups = ctl.bots(), ctl.groups()
    victim, other = "group-0", "group-1"
    kill9(groups[victim]["pid"])

    def victim_back() -> dict[str, dict[str, Any]] | None:
        g = ctl.groups()[victim]
        if g["pid"] == groups[victim]["pid"] or not g["live"]:
            return None
        return ctl.all_live()

    after = wait_for("group-0 and its bots back", victim_back, timeout=120, interval=0.5)
    for n in ctl.layout[victim]:
        assert after[n]["pid"] != bots[n]["pid"]
        assert not pid_alive(bots[n]["pid"])  # the old workers died with their group
    for n in ctl.layout[other]:
        assert after[n]["pid"] == bots[n]["pid"] and after[n]["restarts"] == 0
    g = ctl.groups()
    assert g[other]["pid"] == groups[other]["pid"] and g[other]["restarts"] == 0
    assert g[victim]["restarts"] == 1


def test_rollout_restarts_one_group_at_a_time(ctl: Ctl) -> None:
    before_groups, before_bots = ctl.groups(), ctl.bots()
    code, body = http_json(ctl.url + "/groups/rollout", TOKEN, method="POST")
    assert code == 202 and body["state"] == "running"
    assert http_get(ctl.url + "/groups/rollout", TOKEN, method="POST")[0] == 409
    # While it runs, never are both groups down at once.
    deadline = time.monotonic() + 240
    while True:
        status = ctl.get("/groups/rollout")
        if status["state"] != "running":
            break
        live = [g for g in ctl.groups().values() if g["state"] == "running" and g["live"]]
        assert live, "both groups were down during the rollout"
        assert time.monotonic() < deadline, "rollout did not finish"
        time.sleep(0.2)
    assert status["state"] == "succeeded", status
    s0, s1 = status["steps"]
    assert (s0["group"], s1["group"]) == ("group-0", "group-1")
    assert s1["startedAt"] >= s0["finishedAt"]  # the next only after the previous is back
    after_groups, after_bots = ctl.groups(), ctl.all_live()
    assert after_bots is not None
    for g in ("group-0", "group-1"):
        assert after_groups[g]["pid"] != before_groups[g]["pid"]
    for n in before_bots:
        assert after_bots[n]["pid"] != before_bots[n]["pid"]


def test_a_stopped_bot_stays_stopped_when_its_group_restarts(ctl: Ctl) -> None:
    name = ctl.layout["group-1"][0]
    assert http_get(ctl.url + f"/bots/{name}/stop", TOKEN, method="POST")[0] == 202
    wait_for("stopped", lambda: ctl.bots()[name]["state"] == "stopped")
    old = ctl.groups()["group-1"]["pid"]
    assert http_get(ctl.url + "/groups/group-1/restart", TOKEN, method="POST")[0] == 202
    wait_for("group-1 back", lambda: ctl.groups()["group-1"]["pid"] not in (None, old)
             and ctl.groups()["group-1"]["live"])
    bots = wait_for("bots listed", lambda: (b := ctl.bots()) and
                    b[name]["state"] != "unknown" and b)
    assert bots[name]["state"] == "stopped" and bots[name]["pid"] is None
    assert http_get(ctl.url + f"/bots/{name}/start", TOKEN, method="POST")[0] == 202
    wait_for("started", lambda: ctl.bots()[name]["live"])


def test_the_controller_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    bots = tmp_path / "bots.yaml"
    bots.write_text(bots_yaml(["x"]))
    env = {k: v for k, v in os.environ.items() if k != "WABOT_CONTROLLER_TOKEN"}
    for token in (None, "short"):
        e = {**env, "PYTHONPATH": str(REPO)}
        if token:
            e["WABOT_CONTROLLER_TOKEN"] = token
        proc = subprocess.run([sys.executable, "-m", "wabot_cli", "controller", "--bots",
                               str(bots)], env=e, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert "WABOT_CONTROLLER_TOKEN" in proc.stderr


def test_observe_only_mode_lists_probes_and_federates_containers(tmp_path: Path) -> None:
    """WABOT_WORKER_GROUPS=0 (the generated Compose file's controller): bots run elsewhere;
    the controller probes them at WABOT_BOT_URL_TEMPLATE and never starts one itself."""
    from .helpers import fake_worker_argv

    ports = [free_port(), free_port()]
    dead = free_port()  # nothing listens here
    workers = [subprocess.Popen(fake_worker_argv(), env={**os.environ, "HTTP_PORT": str(p)})
               for p in ports]
    bots = tmp_path / "bots.yaml"
    # botId doubles as the port in this test's URL template (digits are a valid botId).
    bots.write_text("".join(f"""---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {{name: b{i}}}
spec: {{serverName: {TENANT}, botId: "{p}"}}
""" for i, p in enumerate([*ports, dead])))
    port = free_port()
    env = {**os.environ, "WABOT_BOTS_FILE": str(bots), "WABOT_HTTP_HOST": "127.0.0.1",
           "WABOT_HTTP_PORT": str(port), "WABOT_CONTROLLER_TOKEN": TOKEN,
           "WABOT_WORKER_GROUPS": "0", "PYTHONPATH": str(REPO),
           "WABOT_BOT_URL_TEMPLATE": "http://127.0.0.1:{bot_id}"}
    proc = subprocess.Popen([sys.executable, "-m", "wabot_cli", "controller"], env=env,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("controller", lambda: http_get(url + "/livez")[0] == 200, timeout=30)
        wait_for("fakes", lambda: all(http_get(f"http://127.0.0.1:{p}/livez")[0] == 200
                                      for p in ports))
        code, body = http_json(url + "/bots", TOKEN)
        assert code == 200
        seen = {b["name"]: b for b in body}
        assert seen["b0"]["live"] and seen["b1"]["live"] and seen["b0"]["state"] == "running"
        assert seen["b2"]["state"] == "unknown" and seen["b2"]["live"] is False
        assert http_get(url + "/bots/b0/restart", TOKEN, method="POST")[0] == 501
        assert http_get(url + "/groups/rollout", TOKEN, method="POST")[0] == 501
        code, text = http_get(url + "/metrics", TOKEN)
        fake = [line for line in text.decode().splitlines() if line.startswith("fake_total")]
        assert sorted(fake) == sorted(f'fake_total{{bot="{p}",server_name="{TENANT}"}} 7.0'
                                      for p in ports)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for w in workers:
            w.kill()
            w.wait()
