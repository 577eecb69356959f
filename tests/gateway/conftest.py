"""One world for the gateway's tests, built once per module against the real API server:

- a namespace that enforces the Restricted Pod Security Standard, with the real operator
  (`python -m wabot_operator`) watching it, told the gateway's ServiceAccount;
- WhatsAppBots `support` (tenant acme, connected), `sleepy` (acme, never connected) and
  `ledger` (tenant globex); the operator gives each its pod (kwok: scheduled, an IP, Running,
  no container), its RBAC and its API-token Secret `wabot-N-api`;
- the worker of `support`, a real `botworker.Worker` in this process (kwok runs no
  containers): it holds the bot's Lease and publishes status.worker through the API server,
  serves POST /v1/messages on 127.0.0.1 with the token the operator made, and sends through
  neonize's real client with only the last network call recorded (tests/worker/conftest.py);
- API-key Secrets for acme and globex (hashes only) in a namespace of their own, as the chart
  lays them out (the gateway may list every Secret there, so nothing else is in it);
- the gateway as a child process (`python -m gateway`), with
  `WABOT_GATEWAY_WORKER_URL_TEMPLATE` pointing at that worker's port instead of the pod IP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
from tests.worker.conftest import dispatch, recording_client, worker_config
from wabot.spec import API_GROUP, API_VERSION, PLURAL, WhatsAppBotSpec

ACME_KEY = "acme-live-key-7f3c9a1e5b2d4c6e8a0b"
GLOBEX_KEY = "globex-live-key-1a2b3c4d5e6f7a8b9c0d"
GATEWAY_SA = "wabot-gateway"
SUPPORT_SPEC: dict[str, Any] = {
    "serverName": "acme",
    "rateLimit": {"perChatPerMinute": 3, "perBotPerMinute": 6000},
}


@dataclass
class World:
    cluster: Cluster
    operator: OperatorProcess
    worker: Worker
    gateway: subprocess.Popen[bytes]
    gateway_url: str
    gateway_log: Path
    support_token: str
    keys_ns: str

    @property
    def ns(self) -> str:
        return self.cluster.ns

    def url(self, bot: str, namespace: str | None = None) -> str:
        return f"{self.gateway_url}/v1/bots/{namespace or self.ns}/{bot}/messages"

    def sent(self) -> list[tuple[str, str, str]]:
        replies: list[tuple[str, str, str]] = self.worker.client.replies()
        return replies


def call(url: str, body: Any = None, *, key: str | None = ACME_KEY,
         idem: str | None = None, raw: bytes | None = None,
         method: str = "POST") -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    if idem is not None:
        req.add_header("Idempotency-Key", idem)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = resp.read()
            return resp.status, dict(resp.headers), json.loads(payload) if payload else None
    except urllib.error.HTTPError as err:
        payload = err.read()
        return err.code, dict(err.headers), json.loads(payload) if payload else None


def _api_key_secret(name: str, tenant: str, key: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"wabot.io/api-key": "true"}),
        string_data={"tenant": tenant, "key-sha256": hashlib.sha256(key.encode()).hexdigest()})


@pytest.fixture(scope="module")
def world(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("gateway")
    api = kube.api_client()
    assert isinstance(api, client.ApiClient)
    ns = f"t-gw-{uuid.uuid4().hex[:8]}"
    keys_ns = f"{ns}-keys"
    kube.kubectl("create", "namespace", keys_ns)
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns, "annotations": {"wabot.io/tenants": "*"}, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "wabot.io/test": "true"}}}))
    cluster = Cluster(api, ns)
    eventually(lambda: cluster.core.read_namespaced_service_account("default", ns),
               timeout=30, what="default ServiceAccount")
    operator = OperatorProcess(namespace=ns, kubeconfig=kube.kubeconfig,
                               log_path=tmp / "operator.log",
                               extra_env={"WABOT_OPERATOR_GATEWAY_SERVICE_ACCOUNT":
                                          f"{ns}/{GATEWAY_SA}"})
    worker: Worker | None = None
    gateway: subprocess.Popen[bytes] | None = None
    try:
        operator.start()
        cluster.core.create_namespaced_secret(keys_ns, _api_key_secret("acme-key", "acme",
                                                                       ACME_KEY))
        cluster.core.create_namespaced_secret(keys_ns, _api_key_secret("globex-key", "globex",
                                                                       GLOBEX_KEY))
        cluster.create_bot("support", SUPPORT_SPEC)
        cluster.create_bot("sleepy", {"serverName": "acme"})
        cluster.create_bot("ledger", {"serverName": "globex"})

        def running(pod: str) -> bool:
            p = cluster.pod(pod)
            return bool(p and p.status and p.status.phase == "Running" and p.status.pod_ip)

        for bot in ("support", "sleepy", "ledger"):
            eventually(lambda b=bot: running(f"wabot-{b}"), timeout=90, what=f"{bot} pod")

        support_token = eventually(lambda: cluster.bot_api_token("support"), timeout=60,
                                   what="wabot-support-api")

        cfg = worker_config(tmp / "support", "support", "acme", WABOT_BOT_NAME="support",
                            WABOT_NAMESPACE=ns, POD_NAME="wabot-support",
                            WABOT_API_TOKEN=support_token)
        cfg.session_dir.mkdir(parents=True, exist_ok=True)
        worker = Worker(cfg, WhatsAppBotSpec.model_validate(SUPPORT_SPEC),
                        client=recording_client(str(cfg.session_path)),
                        sessions_enabled=False, terminal=False,
                        kube_api=KubeClient.from_kubeconfig(kube.kubeconfig))
        worker.start()
        eventually(lambda: worker is not None and worker.connection.state.lease_held,
                   timeout=30, what="the worker holds the Lease")
        from neonize.events import ConnectedEv

        dispatch(worker.client, ConnectedEv(status=True))
        eventually(lambda: (cluster.bot("support").get("status") or {}).get("phase")
                   == "Connected", timeout=60, what="support Connected")
        assert worker.http is not None

        port = free_port()
        gateway_log = tmp / "gateway.log"
        env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PYTHONPATH": str(REPO),
               "WABOT_GATEWAY_HOST": "127.0.0.1", "WABOT_GATEWAY_PORT": str(port),
               "WABOT_GATEWAY_KEYS_NAMESPACE": keys_ns, "WABOT_GATEWAY_LOG_LEVEL": "DEBUG",
               "WABOT_GATEWAY_WORKER_URL_TEMPLATE": f"http://127.0.0.1:{worker.http.port}"}
        with gateway_log.open("wb") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=REPO,
                                       stdout=out, stderr=subprocess.STDOUT)
        gateway_url = f"http://127.0.0.1:{port}"
        eventually(lambda: http_status(f"{gateway_url}/livez") == 200, timeout=30,
                   what="gateway /livez")
        yield World(cluster, operator, worker, gateway, gateway_url, gateway_log,
                    support_token, keys_ns)
    finally:
        if gateway is not None:
            gateway.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(15)
        if worker is not None:
            worker.stop(5.0)
        for bot in ("support", "sleepy", "ledger"):
            with contextlib.suppress(ApiException):
                cluster.delete_bot(bot)
        with contextlib.suppress(AssertionError):
            eventually(lambda: all(cluster.bot_gone(b) for b in ("support", "sleepy", "ledger")),
                       timeout=30, what="bots gone")
        operator.stop()
        for bot in cluster.custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, PLURAL)["items"]:
            with contextlib.suppress(ApiException):
                cluster.custom.patch_namespaced_custom_object(
                    API_GROUP, API_VERSION, ns, PLURAL, bot["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json")
        kube.kubectl("delete", "namespace", ns, keys_ns, "--wait=false", check=False)
        api.close()
