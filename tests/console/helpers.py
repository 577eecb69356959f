"""Browser steps the console's tests share (Selenium on Debian's headless Chromium)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.polling import eventually

WAIT_S = 20.0


def wait(driver: WebDriver, what: str, cond: Any, timeout: float = WAIT_S) -> Any:
    """Until `cond` holds; an element redrawn by a live update while it was read is a "not
    yet", not a failure."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,
                                             NoSuchElementException),
                         ).until(cond, message=what)


def click(driver: WebDriver, element_id: str) -> None:
    """Click an element, finding it again if a live update redrew it in between."""

    def attempt(d: WebDriver) -> bool:
        d.find_element(By.ID, element_id).click()
        return True

    wait(driver, f"to click #{element_id}", attempt)


def text_of(driver: WebDriver, element_id: str) -> str:
    """An element's visible text, read in one step (the page redraws on live updates)."""
    text = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
        element_id)
    return str(text or "").strip()


def row_phase(driver: WebDriver, bot: str) -> str:
    phase = driver.execute_script(
        "const r = document.querySelector(`#fleet-body tr[data-bot='${arguments[0]}']`);"
        "return r ? r.dataset.phase : ''", bot)
    return str(phase or "")


def sign_in(driver: WebDriver, base: str, kind: str, credential: str) -> None:
    """Through the page's own form, as a person does."""
    driver.delete_all_cookies()
    driver.get(f"{base}/console/")
    wait(driver, "the sign-in form", lambda d: d.find_elements(By.ID, "credential"))
    driver.find_element(By.ID, f"kind-{kind}").click()
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.ID, "signin").click()
    wait(driver, "signed in", lambda d: d.find_element(By.ID, "who").text.strip())


def fleet_rows(driver: WebDriver) -> set[str]:
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#fleet-body tr')].map(r => r.dataset.bot)")
    return set(rows or [])


def settled_rows(driver: WebDriver, expected: set[str]) -> set[str]:
    """The fleet's rows once the live stream delivered its snapshot and they stopped changing
    into `expected` (returns what is shown, for the assertion to name)."""
    wait(driver, "the fleet table", lambda d: d.find_elements(By.ID, "fleet-body"))
    with contextlib.suppress(TimeoutException):
        wait(driver, f"rows {sorted(expected)}", lambda d: fleet_rows(d) == expected)
    return fleet_rows(driver)


def browser_fetch(driver: WebDriver, method: str, path: str,
                  csrf: bool = True) -> tuple[int, Any]:
    """A request made by the page's own origin (the cookie goes with it), with or without the
    CSRF token the page holds."""
    script = """
      const [method, path, csrf, done] = arguments;
      (async () => {
        const me = await (await fetch('/console/api/me')).json();
        const headers = csrf ? {'X-CSRF-Token': me.csrf} : {};
        const r = await fetch(path, {method, headers});
        let body = null; try { body = await r.json(); } catch (e) {}
        done([r.status, body]);
      })();
    """
    status, body = driver.execute_async_script(script, method, path, csrf)
    return int(status), body


def http(url: str, *, method: str = "GET", body: Any = None, cookie: str | None = None,
         origin: str | None = None, headers: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    if cookie:
        req.add_header("Cookie", cookie)
    if origin:
        req.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


__all__ = ["eventually"]
