"""The web console in a real headless Chromium against the gateway on the real API server.

A person signs in with what they have (a tenant's API key, or a Kubernetes token), sees exactly
the bots they may see, watches a bot go from Pairing to Connected without reloading, scans the
QR code the page draws, and may do only what they are allowed to, each action leaving an Event.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from neonize.events import ConnectedEv
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.operator.helpers import eventually
from tests.worker.conftest import message_ev
from wabot.spec import API_GROUP, API_VERSION, PLURAL

from .conftest import ACME_KEY, DOCS, GLOBEX_KEY, REPO, World, zbar_decode
from .helpers import browser_fetch, click, row_phase, settled_rows, sign_in, text_of, wait

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def whatsapp_qr_payload() -> str:
    """Shaped like whatsmeow's: ref, noise key, identity key and ADV secret, comma-separated."""
    parts = [base64.b64encode(secrets.token_bytes(n)).decode() for n in (32, 32, 32)]
    ref = "2@" + base64.b64encode(secrets.token_bytes(66)).decode()
    return ",".join([ref, *parts])


def qr_shown(driver: WebDriver) -> tuple[str, bytes] | None:
    """(version, PNG of the image) once the QR image has loaded, else None."""
    imgs = driver.find_elements(By.ID, "qr")
    if not imgs or not driver.execute_script(
            "const i = arguments[0]; return i.complete && i.naturalWidth > 0", imgs[0]):
        return None
    return imgs[0].get_attribute("data-version") or "", imgs[0].screenshot_as_png


def save_screenshot(driver: WebDriver, name: str) -> None:
    """The README's pictures, written by every run to build/console-screenshots/ (ignored by
    git, so a test run leaves the tree clean); WABOT_CONSOLE_SCREENSHOTS=docs writes them over
    the README's copies in docs/console/, =0 skips them."""
    where = os.environ.get("WABOT_CONSOLE_SCREENSHOTS", "build")
    if where == "0":
        return
    folder = DOCS if where == "docs" else REPO / "build" / "console-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))


def test_a_tenant_sees_only_its_own_bots(world: World, browser: WebDriver) -> None:
    sign_in(browser, world.url, "key", ACME_KEY)
    mine = {f"{world.ns}/support", f"{world.ns}/sleepy", f"{world.ns_b}/branch"}
    assert settled_rows(browser, mine) == mine
    sign_in(browser, world.url, "key", GLOBEX_KEY)
    assert settled_rows(browser, {f"{world.ns}/ledger"}) == {f"{world.ns}/ledger"}
    # Another tenant's bot is "no such bot", on the page and in the API alike.
    browser.get(f"{world.url}/console/bots/{world.ns}/support")
    wait(browser, "the missing-bot state", lambda d: d.find_elements(By.ID, "bot-missing"))
    assert browser_fetch(browser, "GET", f"/console/api/bots/{world.ns}/support")[0] == 404
    assert browser_fetch(browser, "GET",
                         f"/console/api/bots/{world.ns}/support/qr.svg")[0] == 404


def test_a_cluster_user_sees_what_its_rbac_lists(world: World, browser: WebDriver) -> None:
    sign_in(browser, world.url, "token", world.tokens["viewer"])
    assert text_of(browser, "who") == f"system:serviceaccount:{world.ns}:viewer"
    expected = {f"{world.ns}/support", f"{world.ns}/sleepy", f"{world.ns}/ledger"}
    assert settled_rows(browser, expected) == expected  # nothing of namespace B


def test_a_phone_pairs_from_the_page_and_it_updates_live(world: World, browser: WebDriver,
                                                         tmp_path: Path) -> None:
    sign_in(browser, world.url, "key", ACME_KEY)
    settled_rows(browser, {f"{world.ns}/support", f"{world.ns}/sleepy",
                           f"{world.ns_b}/branch"})
    browser.execute_script("window.sameDocument = true")
    support = f"{world.ns}/support"
    row = f"#fleet-body tr[data-bot='{support}']"
    first = whatsapp_qr_payload()
    world.feed_qr(first)
    # The fleet row follows the watch: Pairing, without a reload.
    wait(browser, "support Pairing in the fleet",
         lambda d: row_phase(d, support) == "Pairing")
    browser.find_element(By.CSS_SELECTOR, f"{row} td.name a").click()
    shown = wait(browser, "the QR image", qr_shown)
    assert text_of(browser, "bot-phase") == "Pairing"
    assert "scan the QR code" in text_of(browser, "bot-summary")
    assert "Expires in" in text_of(browser, "pairing-expiry")
    assert zbar_decode(shown[1], tmp_path) == [first]
    save_screenshot(browser, "bot-pairing.png")

    # WhatsApp rotates the code: the page draws the new one by itself.
    second = whatsapp_qr_payload()
    world.feed_qr(second)
    rotated = wait(browser, "the next QR image",
                   lambda d: (s := qr_shown(d)) and s[0] != shown[0] and s)
    assert zbar_decode(rotated[1], tmp_path) == [second]

    world.feed(ConnectedEv(status=True))
    wait(browser, "Connected on the bot page", lambda d: text_of(d, "bot-phase") == "Connected")
    assert not browser.find_elements(By.ID, "qr")
    assert text_of(browser, "bot-summary").startswith("Connected to WhatsApp")
    click(browser, "crumb-fleet")
    wait(browser, "support Connected in the fleet",
         lambda d: row_phase(d, support) == "Connected")
    assert browser.execute_script("return window.sameDocument") is True  # never reloaded
    save_screenshot(browser, "fleet.png")


def test_the_fleet_and_the_bot_page_show_the_bots_activity(world: World,
                                                           browser: WebDriver) -> None:
    """Messages in/out over the last hour in the fleet view (sortable), and on the bot page
    with its webhook state: real messages through neonize's dispatcher, counted by the worker
    and written to status.worker.activity through the API server."""
    if (world.bot("support").get("status") or {}).get("phase") != "Connected":
        world.feed(ConnectedEv(status=True))
    sign_in(browser, world.url, "key", ACME_KEY)
    support = f"{world.ns}/support"
    wait(browser, "support Connected", lambda d: row_phase(d, support) == "Connected")
    for i in range(3):
        world.feed(message_ev("!ping", chat=f"1555000{i:04d}"))
    counts = world.worker.metrics.activity
    eventually(lambda: counts.last_hour(time.time())[1] >= 3, timeout=30,
               what="three replies sent")
    want_in, want_out = (str(n) for n in counts.last_hour(time.time()))
    cell = f"#fleet-body tr[data-bot='{support}'] td.messages-%s"

    def shown(d: WebDriver, kind: str) -> str:
        return str(d.execute_script(
            "const c = document.querySelector(arguments[0]); return c ? c.textContent : ''",
            cell % kind))

    wait(browser, "the counts in the fleet view",
         lambda d: shown(d, "in") == want_in and shown(d, "out") == want_out, timeout=30)
    # Sortable like the other columns: most messages out first.
    click_sort = "document.querySelector(`#fleet th[data-col='messagesOut'] button`).click()"
    browser.execute_script(click_sort)
    browser.execute_script(click_sort)
    wait(browser, "sorted by messages out, descending", lambda d: d.execute_script(
        "const r = document.querySelector('#fleet-body tr'); return r && r.dataset.bot")
        == support)
    assert browser.find_element(
        By.CSS_SELECTOR, "#fleet th[data-col='messagesOut']").get_attribute(
        "aria-sort") == "descending"
    browser.find_element(By.CSS_SELECTOR, f"#fleet-body tr[data-bot='{support}'] td.name a"
                         ).click()
    wait(browser, "the bot page's webhook section",
         lambda d: text_of(d, "webhook-state") == "no webhook configured")
    assert text_of(browser, "bot-messages-in") == want_in
    assert text_of(browser, "bot-messages-out") == want_out


def test_a_pairing_code_is_shown_with_its_expiry(world: World, browser: WebDriver) -> None:
    """Written to status.worker the way a worker in code mode writes it (a merge patch)."""
    now = datetime.now(UTC)
    world.cluster.custom.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, world.ns, PLURAL, "ledger", {"status": {"worker": {
            "state": "Pairing", "podName": "wabot-ledger", "reconnects": 0,
            "updatedAt": now.isoformat(), "pairing": {
                "method": "code", "code": "WXYZ-2345",
                "expiresAt": (now + timedelta(seconds=90)).isoformat()}}}})
    sign_in(browser, world.url, "key", GLOBEX_KEY)
    browser.get(f"{world.url}/console/bots/{world.ns}/ledger")
    wait(browser, "the pairing code", lambda d: text_of(d, "pairing-code") == "WXYZ-2345")
    assert "Expires in" in text_of(browser, "pairing-expiry")
    assert "type the pairing code WXYZ-2345" in text_of(browser, "bot-summary")
    assert not browser.find_elements(By.ID, "qr")


def _order(browser: WebDriver) -> list[str]:
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#fleet-body tr')].map(r => r.dataset.bot)")
    return [str(r).split("/")[1] for r in rows]


def test_the_fleet_filters_and_sorts_from_the_keyboard(world: World,
                                                       browser: WebDriver) -> None:
    sign_in(browser, world.url, "token", world.tokens["viewer"])
    everyone = {f"{world.ns}/{b}" for b in ("support", "sleepy", "ledger")}
    assert settled_rows(browser, everyone) == everyone
    assert _order(browser) == ["ledger", "sleepy", "support"]
    name = browser.find_element(By.ID, "filter-name")
    name.send_keys("slee")
    assert settled_rows(browser, {f"{world.ns}/sleepy"}) == {f"{world.ns}/sleepy"}
    name.send_keys(Keys.BACKSPACE * 4)
    # Tab from the name filter: tenant, phase, then the column headers' sort buttons.
    name.send_keys(Keys.TAB)
    tenant = browser.switch_to.active_element
    assert tenant.get_attribute("id") == "filter-tenant"
    Select(tenant).select_by_value("globex")
    assert settled_rows(browser, {f"{world.ns}/ledger"}) == {f"{world.ns}/ledger"}
    Select(tenant).select_by_value("")
    settled_rows(browser, everyone)
    tenant.send_keys(Keys.TAB)
    browser.switch_to.active_element.send_keys(Keys.TAB)  # phase -> the "Bot" column
    sort = browser.switch_to.active_element
    assert sort.text.startswith("Bot")
    sort.send_keys(Keys.ENTER)  # already by name: Enter reverses it
    wait(browser, "descending by name",
         lambda d: _order(d) == ["support", "sleepy", "ledger"])
    assert browser.find_element(By.CSS_SELECTOR, "th[data-col=name]").get_attribute(
        "aria-sort") == "descending"
    # A link is reachable and opens the bot page without a reload.
    link = browser.find_element(By.CSS_SELECTOR,
                                f"tr[data-bot='{world.ns}/ledger'] td.name a")
    link.send_keys(Keys.ENTER)
    wait(browser, "the bot page", lambda d: d.current_url.endswith(f"/bots/{world.ns}/ledger"))
    wait(browser, "its phase", lambda d: text_of(d, "bot-phase"))


def test_a_phone_screen_shows_the_fleet_as_cards(world: World, browser: WebDriver) -> None:
    sign_in(browser, world.url, "key", ACME_KEY)
    try:
        browser.set_window_size(390, 844)
        mine = {f"{world.ns}/support", f"{world.ns}/sleepy", f"{world.ns_b}/branch"}
        assert settled_rows(browser, mine) == mine
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        label = browser.execute_script(
            "const td = document.querySelector('#fleet-body td.tenant');"
            "return getComputedStyle(td, '::before').content")
        assert label == '"Tenant"'  # each value says what it is, the header row is gone
        save_screenshot(browser, "fleet-phone.png")
        browser.get(f"{world.url}/console/bots/{world.ns}/sleepy")
        wait(browser, "the bot page", lambda d: text_of(d, "bot-summary"))
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.set_window_size(1100, 900)


def test_a_restarted_replica_keeps_the_session_and_the_page_catches_up(
        world: World, browser: WebDriver) -> None:
    """Nothing of a session lives in a gateway process: after a restart the same cookie is
    good, the page's stream reconnects by itself and shows what changed meanwhile. An open
    page does not hold the replica up: SIGTERM ends it within the chart's grace period
    (World.restart waits 20 s at most)."""
    sign_in(browser, world.url, "token", world.tokens["admin"])
    everyone = {f"{world.ns}/{b}" for b in ("support", "sleepy", "ledger")}
    assert settled_rows(browser, everyone) == everyone
    browser.execute_script("window.sameDocument = true")
    assert world.restart is not None
    world.restart(0)
    world.cluster.patch_bot("sleepy", {"suspend": True})  # while the page was disconnected
    try:
        wait(browser, "sleepy Suspended after the reconnect",
             lambda d: row_phase(d, f"{world.ns}/sleepy") == "Suspended", timeout=60)
        assert browser.execute_script("return window.sameDocument") is True
        assert text_of(browser, "who") == f"system:serviceaccount:{world.ns}:admin"
    finally:
        world.cluster.patch_bot("sleepy", {"suspend": False})


def _events(world: World, bot: str, reason: str) -> list[str]:
    items = world.cluster.core.list_namespaced_event(
        world.ns, field_selector=f"involvedObject.name={bot},reason={reason}").items
    return [e.message for e in items if e.source and e.source.component == "wabot-console"]


def _confirm(browser: WebDriver, action: str) -> None:
    click(browser, f"action-{action}")
    wait(browser, "the confirmation", lambda d: d.find_element(By.ID, "confirm").is_displayed())
    click(browser, "confirm-ok")


def test_an_admin_suspends_and_resumes_with_an_event(world: World, browser: WebDriver) -> None:
    sign_in(browser, world.url, "token", world.tokens["admin"])
    browser.get(f"{world.url}/console/bots/{world.ns}/sleepy")
    wait(browser, "the suspend button", lambda d: d.find_elements(By.ID, "action-suspend"))
    # Cancelling changes nothing.
    click(browser, "action-suspend")
    click(browser, "confirm-cancel")
    assert not world.bot("sleepy")["spec"].get("suspend")

    _confirm(browser, "suspend")
    eventually(lambda: world.bot("sleepy")["spec"].get("suspend") is True, timeout=10,
               what="spec.suspend true")
    who = f"user system:serviceaccount:{world.ns}:admin"
    eventually(lambda: _events(world, "sleepy", "Suspended") == [
        f"suspended from the console by {who}"], timeout=10, what="the Suspended Event")
    wait(browser, "Suspended on the page", lambda d: text_of(d, "bot-phase") == "Suspended",
         timeout=60)
    assert "suspended" in text_of(browser, "bot-summary")
    wait(browser, "the Event on the page", lambda d: who in text_of(d, "events"))

    _confirm(browser, "resume")
    eventually(lambda: world.bot("sleepy")["spec"].get("suspend") is False, timeout=10,
               what="spec.suspend false")
    eventually(lambda: _events(world, "sleepy", "Resumed") == [
        f"resumed from the console by {who}"], timeout=10, what="the Resumed Event")
    wait(browser, "no longer Suspended",
         lambda d: text_of(d, "bot-phase") not in ("Suspended", ""), timeout=60)


def test_a_tenant_restarts_and_logs_out_its_bot(world: World, browser: WebDriver) -> None:
    """The session actions reach the real worker through the annotation it acts on once."""
    if (world.bot("support").get("status") or {}).get("phase") != "Connected":
        world.feed(ConnectedEv(status=True))
    sign_in(browser, world.url, "key", ACME_KEY)
    browser.get(f"{world.url}/console/bots/{world.ns}/support")
    wait(browser, "the restart button", lambda d: d.find_elements(By.ID, "action-restart"))
    assert not browser.find_elements(By.ID, "action-suspend")  # not a tenant's to do

    def outcome(action: str) -> tuple[str, str] | None:
        text = text_of(browser, "session-action")
        node = browser.find_elements(By.ID, "session-action")
        if not node or f"session action: {action}," not in text:
            return None
        result = node[0].get_attribute("data-result") or ""
        return (result, node[0].get_attribute("data-request") or "") \
            if result != "Started" else None

    _confirm(browser, "restart")
    result, rid = wait(browser, "the restart's outcome", lambda d: outcome("restart"))
    assert result == "Succeeded" and rid.startswith("console-")
    eventually(lambda: _events(world, "support", "SessionActionRequested") == [
        f"a restart of the WhatsApp connection requested from the console by tenant acme "
        f"(API key) (request {rid})"], timeout=10, what="the Event of the restart")

    world.feed(ConnectedEv(status=True))  # WhatsApp takes the new connection
    wait(browser, "Connected again", lambda d: text_of(d, "bot-phase") == "Connected",
         timeout=40)
    _confirm(browser, "logout")
    result, rid = wait(browser, "the log-out's outcome", lambda d: outcome("logout"),
                       timeout=40)
    assert result == "Succeeded"
    assert world.account.called("logout") == [("logout",)]  # the phone was unlinked
    assert world.exits == [3]  # and the worker asks to start afresh, into pairing
    wait(browser, "LoggedOut on the page", lambda d: text_of(d, "bot-phase") == "LoggedOut",
         timeout=40)
    eventually(lambda: any(f"(request {rid})" in m for m in _events(
        world, "support", "SessionActionRequested")), timeout=10, what="the log-out's Event")


def test_what_a_viewer_may_not_do_is_refused(world: World, browser: WebDriver) -> None:
    path = f"/console/api/bots/{world.ns}/sleepy/actions/suspend"
    # A viewer may change nothing; the tenant may act on its bot's session, not suspend it.
    for kind, credential, shown in (("token", world.tokens["viewer"], "You may not change"),
                                    ("key", ACME_KEY, "Restart connection")):
        sign_in(browser, world.url, kind, credential)
        browser.get(f"{world.url}/console/bots/{world.ns}/sleepy")
        wait(browser, "the actions section", lambda d, s=shown: s in text_of(d, "actions"))
        assert not browser.find_elements(By.ID, "action-suspend")
        status, body = browser_fetch(browser, "POST", path)
        assert status == 403, body
        assert "may not suspend" in body["error"]
    # A viewer without patch may not touch the session either.
    status, body = browser_fetch(browser, "POST",
                                 f"/console/api/bots/{world.ns}/sleepy/actions/restart")
    assert status == 200, body  # the tenant acme may: it is its bot
    sign_in(browser, world.url, "token", world.tokens["viewer"])
    status, body = browser_fetch(browser, "POST",
                                 f"/console/api/bots/{world.ns}/sleepy/actions/logout")
    assert status == 403 and "may not logout" in body["error"]
    # Even someone who may: not without the page's CSRF token.
    sign_in(browser, world.url, "token", world.tokens["admin"])
    status, body = browser_fetch(browser, "POST", path, csrf=False)
    assert status == 403 and "CSRF" in body["error"]
    assert not world.bot("sleepy")["spec"].get("suspend")
    assert _events(world, "sleepy", "Suspended") in ([], [
        f"suspended from the console by user system:serviceaccount:{world.ns}:admin"])


def test_the_page_follows_the_csp_and_keeps_no_secret(world: World, browser: WebDriver) -> None:
    sign_in(browser, world.url, "key", ACME_KEY)
    browser.get(f"{world.url}/console/bots/{world.ns}/support")
    wait(browser, "the bot page", lambda d: text_of(d, "bot-phase"))
    wait(browser, "the events", lambda d: "Recent events" in text_of(d, "events")
         and "…" not in text_of(d, "events"))
    source = browser.page_source
    token = world.worker.cfg.api_token
    api_token = token.get_secret_value() if token is not None else "unset-token"
    for secret in (ACME_KEY, api_token, world.tokens["admin"]):
        assert secret not in source
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: not for scripts
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "Content Security Policy" in e["message"]]
    assert errors == []
