"""`python -m bench.console`: the web console with many bots, in Debian's headless Chromium.

Measures, with N WhatsAppBots (default 1,000) on the API server:
- time to first render: from the browser's navigation start to the fleet table showing all N
  rows (the page shell, its script, the server-sent-events snapshot, one render);
- update latency: from a status write on the API server to the changed row in the browser
  (one bot at a time, 50 times: p50/p95/max), and a burst (every bot's status written at
  once: until the last row changed);
- the gateway's RSS with the fleet in its watch cache and the page open.

A benchmark, not a test: it prints numbers (and writes them to --json); no target is asserted.
Uses $KUBECONFIG's cluster (e.g. `python -m devcluster up`), else starts a local one. The
status is written the way the operator and a worker write it (a merge patch on the status
subresource); no operator runs, so nothing else writes meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, percentile, rss_mb, wait_until
from tests.support.net import free_port, http_status
from wabot.spec import API_GROUP, API_VERSION, PLURAL

KEY = "bench-console-key-" + uuid.uuid4().hex
SECRET = "bench-console-secret-" + "0" * 32
# Records, in the page, when each row's phase last changed and when all N rows were first
# shown (installed before any page script runs; the console itself has no hook for this).
OBSERVER = """
window.__bench = {changed: {}, full: null, want: %d};
new MutationObserver(() => {
  const body = document.getElementById('fleet-body');
  if (!body) return;
  const t = performance.timeOrigin + performance.now();
  if (window.__bench.full === null && body.children.length >= window.__bench.want)
    window.__bench.full = performance.now();
  for (const r of body.children) {
    const k = r.dataset.bot, p = r.dataset.phase;
    const seen = window.__bench.changed[k];
    if (!seen || seen[0] !== p) window.__bench.changed[k] = [p, t];
  }
}).observe(document, {childList: true, subtree: true});
"""


@contextlib.contextmanager
def cluster() -> Iterator[Path]:
    existing = os.environ.get("KUBECONFIG")
    if existing:
        yield Path(existing)
        return
    from devcluster.cluster import LocalCluster

    local = LocalCluster(root=Path(tempfile.mkdtemp(prefix="wabot-bench-console-"))).start()
    try:
        yield local.kubeconfig
    finally:
        local.stop()


def status(phase: str, n: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"status": {"phase": phase, "restarts": n % 3, "worker": {
        "state": "Connected" if phase == "Connected" else "Connecting", "reconnects": n,
        "updatedAt": now, "lastConnectedAt": now}}}


def make_bots(custom: Any, ns: str, n: int) -> None:
    def one(i: int) -> None:
        name = f"bot-{i:04d}"
        custom.create_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL, {
            "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "WhatsAppBot",
            "metadata": {"name": name}, "spec": {"serverName": "bench"}})
        custom.patch_namespaced_custom_object_status(API_GROUP, API_VERSION, ns, PLURAL, name,
                                                     status("Connecting", i))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,900", "--disable-background-networking", "--no-pings",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                            options=options)


def run(n: int, updates: int) -> dict[str, Any]:
    from kubernetes import client, config

    out: dict[str, Any] = {"bots": n}
    with cluster() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        ns = f"bench-con-{uuid.uuid4().hex[:6]}"
        keys = f"{ns}-keys"
        for name in (ns, keys):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        gateway: subprocess.Popen[bytes] | None = None
        driver = None
        try:
            core.create_namespaced_secret(keys, client.V1Secret(
                metadata=client.V1ObjectMeta(name="k", labels={"wabot.io/api-key": "true"}),
                string_data={"tenant": "bench",
                             "key-sha256": hashlib.sha256(KEY.encode()).hexdigest()}))
            started = time.monotonic()
            make_bots(custom, ns, n)
            out["create_s"] = round(time.monotonic() - started, 1)
            port = free_port()
            env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO),
                   "WABOT_GATEWAY_HOST": "127.0.0.1", "WABOT_GATEWAY_PORT": str(port),
                   "WABOT_GATEWAY_KEYS_NAMESPACE": keys, "WABOT_GATEWAY_NAMESPACES": ns,
                   "WABOT_GATEWAY_CONSOLE": "true", "WABOT_GATEWAY_CONSOLE_SECRET": SECRET}
            gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_status(f"{base}/livez") == 200, 30, "gateway")
            driver = browser()
            out.update(measure(driver, base, custom, ns, n, updates))
            out["gateway_rss_mb"] = round(rss_mb(gateway.pid), 1)
        finally:
            if driver is not None:
                driver.quit()
            if gateway is not None:
                gateway.terminate()
                gateway.wait(15)
            for name in (ns, keys):
                with contextlib.suppress(Exception):
                    core.delete_namespace(name)
            api.close()
    return out


def sign_in(driver: Any, base: str) -> None:
    driver.get(f"{base}/console/")
    driver.execute_async_script("""
      const [key, done] = arguments;
      fetch('/console/api/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({kind: 'key', credential: key})}).then(r => done(r.status));
    """, KEY)


def measure(driver: Any, base: str, custom: Any, ns: str, n: int,
            updates: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sign_in(driver, base)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": OBSERVER % n})
    firsts = []
    for _ in range(3):  # the first load also warms the browser's cache of the script
        driver.get(f"{base}/console/")
        firsts.append(wait_until(lambda: driver.execute_script("return window.__bench.full"),
                                 60, f"{n} rows") / 1000.0)
    out["first_render_s"] = [round(x, 3) for x in firsts]
    lat = []
    for i in range(updates):
        name = f"bot-{(i * 37) % n:04d}"
        phase = "Connected" if i % 2 == 0 else "Disconnected"
        key = f"{ns}/{name}"
        t0 = time.time() * 1000
        custom.patch_namespaced_custom_object_status(API_GROUP, API_VERSION, ns, PLURAL, name,
                                                     status(phase, i))
        seen = wait_until(lambda k=key, p=phase: (c := driver.execute_script(
            "return window.__bench.changed[arguments[0]]", k)) and c[0] == p and c, 30, key)
        lat.append(seen[1] - t0)
        time.sleep(0.05)
    out["update_ms"] = {"p50": round(percentile(lat, 50) or 0, 1),
                        "p95": round(percentile(lat, 95) or 0, 1), "max": round(max(lat), 1)}
    t0 = time.time() * 1000
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, ns, PLURAL, f"bot-{i:04d}", status("Pairing", i)), range(n)))
    written = time.time() * 1000 - t0
    last = wait_until(lambda: driver.execute_script(
        "const c = Object.values(window.__bench.changed);"
        "return c.length >= arguments[0] && c.every(x => x[0] === 'Pairing')"
        " ? Math.max(...c.map(x => x[1])) : null", n), 120, "the burst shown")
    out["burst"] = {"writes_ms": round(written), "all_shown_ms": round(last - t0)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bots", type=int, default=1000)
    p.add_argument("--updates", type=int, default=50)
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    result = run(args.bots, args.updates)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
