"""The console on the monolith's endpoint (issue 27: a team without Kubernetes pairs and watches
its bots the same way), in Debian's headless Chromium: a real monolith (`python -m wabot_cli`,
ROLE=monolith) supervising real worker processes (tests/console/fleet_worker.py: the real
worker with neonize's real client, fed a QR code through neonize's own callback), and a real
controller whose two worker groups serve the bots behind its one console. No cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from fleet.sharding import group_names, owner
from tests.conftest import REPO
from tests.fleet.helpers import http_get, http_json, wait_for
from tests.fleet.test_monolith import Running, bots_yaml, start_monolith, stop_monolith
from tests.support.net import free_port
from tests.worker.receiver import Receiver
from wabot.console import page

from .conftest import zbar_decode
from .helpers import browser_fetch, http, row_phase, text_of, wait
from .test_console_browser import _confirm, qr_shown, save_screenshot

pytestmark = [pytest.mark.slow]

TOKEN = "fleet-console-token-7d1e9a3c5b"
HOOK_KEY = "fleet-console-webhook-key-0123456789"
QR_PREFIX = "2@fleetconsoleref,bm9pc2Uta2V5LWZvci10aGUtdGVzdA==,aWRlbnRpdHk=,"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """alpha's webhook receiver on 127.0.0.1 (the admin allow-lists loopback below)."""
    r = Receiver(HOOK_KEY.encode()).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def monolith(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("fleet-console")
    command = f"{sys.executable} {REPO / 'tests' / 'console' / 'fleet_worker.py'}"
    (tmp / "secrets" / "hook").mkdir(parents=True)
    (tmp / "secrets" / "hook" / "value").write_text(HOOK_KEY)
    hook = (f"  webhook: {{url: '{receiver.url}', secretRef: {{name: hook}}, "
            "events: [message]}\n")
    r = start_monolith(tmp, bots_yaml("alpha", extra=hook) + bots_yaml("beta", tenant="globex"),
                       token=TOKEN, WABOT_WORKER_COMMAND=command, TEST_QR_PREFIX=QR_PREFIX,
                       WABOT_SECRETS_DIR=str(tmp / "secrets"),
                       WABOT_WEBHOOK_ALLOW_CIDRS="127.0.0.1/32",
                       WABOT_WEBHOOK_BACKOFF_CAP_SECONDS="0.5")
    try:
        yield r
    finally:
        stop_monolith(r)


def _bot(r: Running, name: str) -> dict[str, Any]:
    code, body = http_json(f"{r.url}/bots/{name}", TOKEN)
    assert code == 200, body
    return dict(body)


def _sign_in(driver: WebDriver, base: str, credential: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/console/")
    wait(driver, "the sign-in form", lambda d: d.find_elements(By.ID, "credential"))
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.ID, "signin").click()


def _open_bot_page(browser: WebDriver, r: Running, bot: str, action: str) -> int:
    """Signed in, on the bot's page once its `action` button is there; the worker's pid."""
    _sign_in(browser, r.url, TOKEN)
    browser.get(f"{r.url}/console/bots/local/{bot}")
    wait(browser, f"the {action} button", lambda d: d.find_elements(By.ID, f"action-{action}"),
         timeout=60)
    return int(_bot(r, bot)["pid"])


def test_sign_in_needs_the_control_token(monolith: Running, browser: WebDriver) -> None:
    status, _h, _b = http(f"{monolith.url}/console/api/bots")
    assert status == 401
    # The gateway's page, its strict CSP, no inline script; poll.js stands in for the stream.
    status, headers, shell = http(f"{monolith.url}/console/")
    assert status == 200 and headers["Content-Security-Policy"] == page.CSP
    assert shell.count(b"<script") == shell.count(b'<script src="/console/static/') == 3
    assert b"/console/static/poll.js" in shell
    # A sign-in from another site's page (no or a foreign Origin) is refused before the token.
    status, _h, _b = http(f"{monolith.url}/console/api/login", method="POST",
                          body={"kind": "token", "credential": TOKEN})
    assert status == 403
    # Reached by another name over plain HTTP, the Secure cookie would be dropped: refused.
    status, _h, body = http(f"{monolith.url}/console/api/login", method="POST",
                            body={"kind": "token", "credential": TOKEN},
                            origin="http://bots.example:5000",
                            headers={"Host": "bots.example:5000"})
    assert status == 400 and b"HTTPS" in body
    _sign_in(browser, monolith.url, "not-the-token-at-all")
    wait(browser, "the refusal", lambda d: "not valid" in text_of(d, "login-error"))
    assert not browser.get_cookies()
    _sign_in(browser, monolith.url, TOKEN)
    wait(browser, "signed in", lambda d: d.find_element(By.ID, "who").text.strip())
    cookie = browser.get_cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    # An action without the page's CSRF token is refused, with it accepted.
    assert browser_fetch(browser, "POST", "/console/api/bots/local/beta/actions/suspend",
                         csrf=False)[0] == 403


def test_pairing_from_the_browser(monolith: Running, browser: WebDriver) -> None:
    """Fleet view and bot page show Pairing and the QR (read back from the screenshot), then
    Connected without a reload when neonize reports the connection."""
    _sign_in(browser, monolith.url, TOKEN)
    wait(browser, "both bots Pairing", lambda d: row_phase(d, "local/alpha") == "Pairing"
         and row_phase(d, "local/beta") == "Pairing", timeout=90)
    browser.get(f"{monolith.url}/console/bots/local/alpha")
    shown = wait(browser, "the QR image", qr_shown, timeout=30)
    assert text_of(browser, "bot-phase") == "Pairing"
    assert zbar_decode(shown[1], Path(os.environ.get("TMPDIR", "/tmp"))) == [QR_PREFIX + "alpha"]
    # The page never holds a worker's token or the control token.
    assert TOKEN not in browser.page_source

    os.kill(int(_bot(monolith, "alpha")["pid"]), signal.SIGUSR1)  # neonize: Connected
    wait(browser, "Connected on the bot page",
         lambda d: text_of(d, "bot-phase") == "Connected", timeout=30)
    assert not browser.find_elements(By.ID, "qr")


def _cell(driver: WebDriver, bot: str, kind: str) -> str:
    return str(driver.execute_script(
        "const c = document.querySelector(`#fleet-body tr[data-bot='${arguments[0]}'] "
        "td.messages-${arguments[1]}`); return c ? c.textContent : ''", bot, kind))


def test_activity_and_webhook_state_on_the_pages(monolith: Running, receiver: Receiver,
                                                 browser: WebDriver) -> None:
    """The fleet view's in/out counts and the bot page's webhook state come from the worker
    (GET /v1/session): real messages through neonize's dispatcher, a real receiver that
    fails with 503 and then answers."""
    receiver.status = 503
    pid = _open_bot_page(browser, monolith, "alpha", "restart")
    os.kill(pid, signal.SIGUSR1)  # neonize: Connected (the replies need a connection)
    wait(browser, "Connected", lambda d: text_of(d, "bot-phase") == "Connected", timeout=30)
    os.kill(pid, signal.SIGUSR2)  # three "!ping" messages
    wait(browser, "the failing webhook", lambda d: text_of(d, "webhook-state").startswith(
        "failing since ") and text_of(d, "webhook-state").endswith(": HTTP 503"), timeout=30)
    wait(browser, "three events queued",
         lambda d: text_of(d, "webhook-queue") == "3 events waiting", timeout=30)
    assert text_of(browser, "bot-messages-in") == "3"
    assert str(receiver.port) not in browser.page_source and HOOK_KEY not in browser.page_source
    browser.execute_script("document.getElementById('activity').scrollIntoView()")
    save_screenshot(browser, "bot-webhooks.png")

    receiver.status = 200
    wait(browser, "delivering again", lambda d: text_of(d, "webhook-state") == "delivering"
         and text_of(d, "webhook-queue") == "0 events waiting", timeout=30)
    assert text_of(browser, "webhook-last") != "none yet"
    assert text_of(browser, "bot-messages-out") == "3"

    browser.get(f"{monolith.url}/console/")
    wait(browser, "the counts in the fleet view",
         lambda d: _cell(d, "local/alpha", "in") == "3" and _cell(d, "local/alpha", "out") == "3",
         timeout=30)
    assert _cell(browser, "local/beta", "in") == "0"
    # Sortable: most messages in first, then fewest.
    sort = "document.querySelector(`#fleet th[data-col='messagesIn'] button`).click()"
    browser.execute_script(sort)
    browser.execute_script(sort)
    first = "return document.querySelector('#fleet-body tr').dataset.bot"
    wait(browser, "alpha first", lambda d: d.execute_script(first) == "local/alpha")
    browser.execute_script(sort)
    wait(browser, "beta first", lambda d: d.execute_script(first) == "local/beta")


def test_suspend_and_resume_from_the_browser(monolith: Running, browser: WebDriver) -> None:
    pid = _open_bot_page(browser, monolith, "beta", "suspend")
    _confirm(browser, "suspend")
    wait(browser, "Suspended on the page", lambda d: text_of(d, "bot-phase") == "Suspended",
         timeout=30)
    assert _bot(monolith, "beta")["state"] == "stopped"
    _confirm(browser, "resume")
    wait(browser, "Pairing again", lambda d: text_of(d, "bot-phase") == "Pairing", timeout=90)
    assert _bot(monolith, "beta")["pid"] != pid


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ROLE=controller with two worker groups, one bot each (alpha in the group the sharding
    gives it, and the first name the other group owns)."""
    tmp = tmp_path_factory.mktemp("controller-console")
    groups = group_names(2)
    other = next(f"bot{i}" for i in range(100)
                 if owner(f"acme/bot{i}", groups) != owner("acme/alpha", groups))
    (tmp / "bots.yaml").write_text(bots_yaml("alpha", other))
    port = free_port()
    env = {**os.environ, "ROLE": "controller", "WABOT_BOTS_FILE": str(tmp / "bots.yaml"),
           "AUTH_DIR": str(tmp / "data"), "WABOT_HTTP_HOST": "127.0.0.1",
           "WABOT_HTTP_PORT": str(port), "WABOT_CONTROLLER_TOKEN": TOKEN,
           "WABOT_WORKER_GROUPS": "2", "WABOT_STOP_GRACE_SECONDS": "20",
           "PYTHONPATH": str(REPO), "TEST_QR_PREFIX": QR_PREFIX,
           "WABOT_WORKER_COMMAND": f"{sys.executable} "
                                   f"{REPO / 'tests' / 'console' / 'fleet_worker.py'}"}
    with (tmp / "controller.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wabot_cli"], env=env, cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT)
    r = Running(proc, f"http://127.0.0.1:{port}", tmp / "data", tmp / "bots.yaml",
                tmp / "controller.log")
    try:
        wait_for("controller http", lambda: proc.poll() is not None or
                 http_get(r.url + "/livez")[0] == 200, timeout=30)
        assert proc.poll() is None, r.log.read_text()[-3000:]
        yield r.url
    finally:
        stop_monolith(r)  # SIGTERM, then SIGKILL after a minute


def test_the_controller_serves_its_groups_bots(controller: str, browser: WebDriver) -> None:
    """Both groups' bots in one fleet view; a bot's page (QR read back, Connected live) and its
    suspend go through the controller to the owning group."""
    code, bots = http_json(controller + "/bots", TOKEN)
    assert code == 200
    group = {b["name"]: b["group"] for b in bots}
    assert len(set(group.values())) == 2
    _sign_in(browser, controller, TOKEN)
    keys = [f"{g}/{name}" for name, g in group.items()]
    wait(browser, "both groups' bots Pairing",
         lambda d: all(row_phase(d, k) == "Pairing" for k in keys), timeout=120)

    browser.get(f"{controller}/console/bots/{group['alpha']}/alpha")
    shown = wait(browser, "the QR image", qr_shown, timeout=30)
    assert zbar_decode(shown[1], Path(os.environ.get("TMPDIR", "/tmp"))) == [QR_PREFIX + "alpha"]
    os.kill(int(http_json(controller + "/bots/alpha", TOKEN)[1]["pid"]), signal.SIGUSR1)
    wait(browser, "Connected on the bot page",
         lambda d: text_of(d, "bot-phase") == "Connected", timeout=30)
    # A bot asked for under a group that does not own it does not exist.
    wrong = next(g for g in set(group.values()) if g != group["alpha"])
    assert browser_fetch(browser, "GET", f"/console/api/bots/{wrong}/alpha")[0] == 404

    _confirm(browser, "suspend")
    wait(browser, "Suspended on the page", lambda d: text_of(d, "bot-phase") == "Suspended",
         timeout=30)
    alpha = http_json(controller + "/bots/alpha", TOKEN)[1]
    assert alpha["desired"] is False and alpha["state"] == "stopped"
    browser.get(f"{controller}/console/")
    wait(browser, "the other group's bot Pairing",
         lambda d: row_phase(d, f"{wrong}/{_other(group)}") == "Pairing")
    # Its worker's counts reach the controller's fleet view through its group ("—": none).
    wait(browser, "the other bot's counts",
         lambda d: _cell(d, f"{wrong}/{_other(group)}", "in") == "0")
    # A group that stops answering: its bot stays listed, Pending, with the reason.
    groups = {g["name"]: g for g in http_json(controller + "/groups", TOKEN)[1]}
    stuck = int(groups[wrong]["pid"])
    os.kill(stuck, signal.SIGSTOP)
    try:
        wait(browser, "the silent group's bot Pending",
             lambda d: row_phase(d, f"{wrong}/{_other(group)}") == "Pending", timeout=30)
    finally:
        os.kill(stuck, signal.SIGCONT)


def test_a_session_action_reaches_the_worker(monolith: Running, browser: WebDriver) -> None:
    """Restart connection: the monolith asks the worker's own /v1/session/restart with the
    worker's token; the page shows the worker's outcome."""
    pid = _open_bot_page(browser, monolith, "alpha", "restart")
    _confirm(browser, "restart")

    def outcome(d: WebDriver) -> str | None:
        node = d.find_elements(By.ID, "session-action")
        if not node or "session action: restart," not in text_of(d, "session-action"):
            return None
        result = node[0].get_attribute("data-result") or ""
        return result if result not in ("", "Started") else None

    assert wait(browser, "the restart's outcome", outcome, timeout=40) == "Succeeded"
    assert _bot(monolith, "alpha")["pid"] == pid  # the connection restarted, not the process


def _other(group: dict[str, str]) -> str:
    return next(name for name in group if name != "alpha")
