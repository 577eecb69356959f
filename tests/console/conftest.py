"""One world for the console's tests, against the real API server (tests/conftest.py's kube):

- namespace A (the real operator watches it) with WhatsAppBots `support` (tenant acme),
  `sleepy` (acme) and `ledger` (globex); namespace B with `branch` (acme), not watched by any
  operator (a bot with no status yet);
- the worker of `support`: a real `botworker.Worker` in this process with neonize's real
  client (only the calls that would reach WhatsApp answered locally,
  tests/worker/account_client.py), publishing status.worker through the API server and
  watching its WhatsAppBot as in its pod; the tests feed it QR and Connected events through
  neonize's own callback and dispatcher, as whatsmeow would;
- API-key Secrets for acme and globex (hashes only) in a keys namespace, as the chart has them;
- two ServiceAccounts whose tokens (TokenRequest) sign a cluster user in: `viewer` may get and
  list bots and Events in namespace A only; `admin` may also patch them there;
- two gateway processes (`python -m gateway`, console on) with the same console secret, like
  two replicas of the Deployment;
- headless Chromium from Debian (chromium + chromium-driver) driven by Selenium.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from botworker.adapters.kube_client import KubeClient
from botworker.worker import Worker
from tests.conftest import REPO, Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.support.net import free_port, http_status
from tests.worker.account_client import AccountWorld, account_client
from tests.worker.conftest import dispatch, worker_config
from wabot.spec import API_GROUP, API_VERSION, PLURAL, WhatsAppBotSpec

ACME_KEY = "acme-console-key-5e1f0c2b9d8a7e6f"
GLOBEX_KEY = "globex-console-key-0a9b8c7d6e5f4a3b"
SECRET = "console-test-secret-0123456789abcdef-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS = REPO / "docs" / "console"


@dataclass
class World:
    kube: Kube
    cluster: Cluster
    ns_b: str
    keys_ns: str
    worker: Worker
    gateways: list[str]
    logs: list[Path]
    tokens: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restart: Callable[[int], None] | None = None  # stop and start replica i, same port
    account: AccountWorld = field(default_factory=AccountWorld)  # what the phone was asked
    exits: list[int] = field(default_factory=list)  # exit codes the worker asked for

    @property
    def ns(self) -> str:
        return self.cluster.ns

    @property
    def url(self) -> str:
        return self.gateways[0]

    def feed_qr(self, payload: str) -> None:
        """neonize's own QR entry point, called as its Go side calls it: a C string."""
        buf = ctypes.create_string_buffer(payload.encode())
        self.worker.client._NewClient__onQr(0, ctypes.addressof(buf))

    def feed(self, ev: Any) -> None:
        dispatch(self.worker.client, ev)

    def bot(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.custom.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace or self.ns, PLURAL, name)
        return result


def _api_key_secret(name: str, tenant: str, key: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"wabot.io/api-key": "true"}),
        string_data={"tenant": tenant, "key-sha256": hashlib.sha256(key.encode()).hexdigest()})


def _namespace(kube: Kube, name: str) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "annotations": {"wabot.io/tenants": "*"}, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "wabot.io/test": "true"}}}))


def _users(kube: Kube, ns: str) -> dict[str, str]:
    """ServiceAccounts `viewer` and `admin` in `ns`, their Roles there, and a token each."""
    rules = {"viewer": ["get", "list", "watch"], "admin": ["get", "list", "watch", "patch"]}
    tokens: dict[str, str] = {}
    for user, verbs in rules.items():
        kube.kubectl("-n", ns, "create", "serviceaccount", user)
        kube.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": f"console-{user}", "namespace": ns},
            "rules": [{"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": verbs},
                      {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]}))
        kube.kubectl("-n", ns, "create", "rolebinding", f"console-{user}",
                     f"--role=console-{user}", f"--serviceaccount={ns}:{user}")
        tokens[user] = kube.kubectl("-n", ns, "create", "token", user,
                                    "--duration=2h").stdout.strip()
    return tokens


def _gateway(kube: Kube, port: int, keys_ns: str, namespaces: str,
             log: Path) -> subprocess.Popen[bytes]:
    # Serving two namespaces only: a watch per namespace, and no bot of another test's.
    env = {**os.environ, "WABOT_GATEWAY_NAMESPACES": namespaces,
           "KUBECONFIG": str(kube.kubeconfig), "PYTHONPATH": str(REPO),
           "WABOT_GATEWAY_HOST": "127.0.0.1", "WABOT_GATEWAY_PORT": str(port),
           "WABOT_GATEWAY_KEYS_NAMESPACE": keys_ns, "WABOT_GATEWAY_LOG_LEVEL": "DEBUG",
           "WABOT_GATEWAY_KEYS_TTL_SECONDS": "2",
           "WABOT_GATEWAY_CONSOLE": "true", "WABOT_GATEWAY_CONSOLE_SECRET": SECRET}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="package")
def world(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console")
    api = kube.api_client()
    assert isinstance(api, client.ApiClient)
    ns = f"t-con-{uuid.uuid4().hex[:8]}"
    ns_b, keys_ns = f"{ns}-b", f"{ns}-keys"
    kube.kubectl("create", "namespace", keys_ns)
    _namespace(kube, ns)
    _namespace(kube, ns_b)
    cluster = Cluster(api, ns)
    eventually(lambda: cluster.core.read_namespaced_service_account("default", ns),
               timeout=30, what="default ServiceAccount")
    operator = OperatorProcess(namespace=ns, kubeconfig=kube.kubeconfig,
                               log_path=tmp / "operator.log")
    worker: Worker | None = None
    gateways: list[subprocess.Popen[bytes]] = []
    exits: list[int] = []
    try:
        operator.start()
        for name, tenant, key in (("acme-key", "acme", ACME_KEY),
                                  ("globex-key", "globex", GLOBEX_KEY)):
            cluster.core.create_namespaced_secret(keys_ns, _api_key_secret(name, tenant, key))
        cluster.create_bot("support", {"serverName": "acme"})
        cluster.create_bot("sleepy", {"serverName": "acme"})
        cluster.create_bot("ledger", {"serverName": "globex"})
        Cluster(api, ns_b).create_bot("branch", {"serverName": "acme"})
        tokens = _users(kube, ns)

        token = eventually(lambda: cluster.bot_api_token("support"), timeout=60,
                           what="wabot-support-api")
        # As in its pod: it watches its WhatsAppBot (spec and session-action annotations).
        cfg = worker_config(tmp / "support", "support", "acme", WABOT_BOT_NAME="support",
                            WABOT_NAMESPACE=ns, POD_NAME="wabot-support",
                            WABOT_API_TOKEN=token, WABOT_SPEC_SOURCE="kubernetes")
        cfg.session_dir.mkdir(parents=True, exist_ok=True)
        account = AccountWorld()
        worker = Worker(cfg, WhatsAppBotSpec.model_validate({"serverName": "acme"}),
                        client=account_client(str(cfg.session_path), account),
                        sessions_enabled=False, terminal=False,
                        kube_api=KubeClient.from_kubeconfig(kube.kubeconfig),
                        exit_request=exits.append,
                        # status.worker.activity every second, not every minute: the test
                        # waits for the page to show the counts.
                        activity_period_s=1.0)
        worker.start()
        eventually(lambda: worker is not None and worker.connection.state.lease_held,
                   timeout=30, what="the worker holds the Lease")
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        logs = [tmp / f"gateway-{i}.log" for i in range(2)]

        def start(i: int) -> None:
            proc = _gateway(kube, ports[i], keys_ns, f"{ns},{ns_b}", logs[i])
            gateways.append(proc)
            eventually(lambda: http_status(f"{urls[i]}/livez") == 200, timeout=30,
                       what="gateway /livez")
            procs[i] = proc

        def restart(i: int) -> None:
            procs[i].terminate()
            procs[i].wait(20)
            start(i)

        procs: list[subprocess.Popen[bytes]] = [None, None]  # type: ignore[list-item]
        for i in range(2):
            start(i)
        yield World(kube, cluster, ns_b, keys_ns, worker, urls, logs, tokens=tokens,
                    procs=procs, restart=restart, account=account, exits=exits)
    finally:
        for gw in gateways:
            gw.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                gw.wait(15)
        if worker is not None:
            worker.stop(5.0)
        for bot in ("support", "sleepy", "ledger"):
            with contextlib.suppress(ApiException):
                cluster.delete_bot(bot)
        with contextlib.suppress(AssertionError):
            eventually(lambda: all(cluster.bot_gone(b) for b in ("support", "sleepy", "ledger")),
                       timeout=30, what="bots gone")
        operator.stop()
        for namespace in (ns, ns_b):
            for obj in cluster.custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, PLURAL)["items"]:
                with contextlib.suppress(ApiException):
                    cluster.custom.patch_namespaced_custom_object(
                        API_GROUP, API_VERSION, namespace, PLURAL, obj["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
        kube.kubectl("delete", "namespace", ns, ns_b, keys_ns, "--wait=false", check=False)
        api.close()


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium; nothing is downloaded (Selenium is given both paths)."""
    if not chromium_available():
        pytest.fail("the console's browser tests need Debian's chromium and chromium-driver "
                    "(scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--no-pings",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--metrics-recording-only", "--safebrowsing-disable-auto-update",
                # Nothing but this machine: every other host name fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def zbar_decode(png: bytes, tmp: Path) -> list[str]:
    """The QR codes zbar (Debian's zbar-tools) reads in a PNG."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail("zbarimg (Debian's zbar-tools) is needed to read the QR code back")
    path = tmp / f"qr-{uuid.uuid4().hex[:6]}.png"
    path.write_bytes(png)
    out = subprocess.run([zbarimg, "--quiet", "--raw", "-Sqrcode.enable", str(path)],
                         capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line]
