"""The operator's part of the integrations, against the real API server: the bot's pod gets the
webhook key, the proxy URL and its API token from Secrets (never as values), the API-token
Secret is made once and kept, and a worker that finds its proxy URL unusable turns into a
clear condition (Degraded, reason InvalidProxy) without the URL's credentials anywhere."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from kubernetes import client

from botworker.adapters.kube_client import KubeClient
from botworker.worker import Worker
from tests.conftest import Kube
from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.worker.conftest import recording_client, worker_config
from wabot.spec import WhatsAppBotSpec

pytestmark = pytest.mark.cluster
PROXY_PASSWORD = "s0cks-pa55word"


def _secret(cluster: Cluster, name: str, **data: str) -> None:
    cluster.core.create_namespaced_secret(cluster.ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"wabot.io/bot-secret": "true"}),
        string_data=data))


def test_pod_env_comes_from_secrets_and_the_api_token_is_made_once(
        cluster: Cluster, operator: OperatorProcess) -> None:
    _secret(cluster, "acme-hook", value="whsec-test")
    _secret(cluster, "acme-proxy", url="socks5://u:p@proxy.example:1080")
    cluster.create_bot("hooked", {
        "webhook": {"url": "https://hooks.example/wabot", "secretRef": {"name": "acme-hook"},
                    "events": ["message", "connection"]},
        "proxy": {"secretRef": {"name": "acme-proxy", "key": "url"}}})
    pod = eventually(lambda: cluster.pod("wabot-hooked"), what="pod")
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["WABOT_WEBHOOK_SECRET"].value is None
    assert env["WABOT_WEBHOOK_SECRET"].value_from.secret_key_ref.name == "acme-hook"
    assert env["WABOT_PROXY_URL"].value_from.secret_key_ref.to_dict() == {
        "name": "acme-proxy", "key": "url", "optional": None}
    ref = env["WABOT_API_TOKEN"].value_from.secret_key_ref
    assert (ref.name, ref.key, ref.optional) == ("wabot-hooked-api", "token", True)

    secret = eventually(lambda: cluster.core.read_namespaced_secret("wabot-hooked-api",
                                                                    cluster.ns))
    token = base64.b64decode(secret.data["token"]).decode()
    assert len(token) >= 32
    assert secret.metadata.owner_references[0].kind == "WhatsAppBot"
    # A later pass (here: a spec change that rolls the pod) keeps the same token.
    cluster.patch_bot("hooked", {"rateLimit": {"perChatPerMinute": 5}})
    cluster.patch_bot("hooked", {"image": "registry.invalid/wabot-worker:other"})
    eventually(lambda: (p := cluster.pod("wabot-hooked")) is not None and
               p.spec.containers[0].image.endswith(":other"), what="pod replaced")
    again = cluster.core.read_namespaced_secret("wabot-hooked-api", cluster.ns)
    assert base64.b64decode(again.data["token"]).decode() == token
    # The worker's Role reads no Secret, not even those its spec names (the kubelet injects
    # them) nor its API token's.
    role = cluster.rbac.read_namespaced_role("wabot-hooked", cluster.ns)
    assert not [r for r in role.rules if "secrets" in r.resources]


def test_an_invalid_proxy_url_is_a_clear_condition(cluster: Cluster, operator: OperatorProcess,
                                                   kube: Kube, tmp_path: Path) -> None:
    _secret(cluster, "bad-proxy", value=f"ftp://bob:{PROXY_PASSWORD}@proxy.example:21")
    cluster.create_bot("proxied", {"proxy": {"secretRef": {"name": "bad-proxy"}}})
    eventually(lambda: (p := cluster.pod("wabot-proxied")) is not None and p.status.phase ==
               "Running", what="pod running (kwok)")
    # The pod's worker, run here (kwok runs no containers) with what the kubelet would give
    # it: WABOT_PROXY_URL from the Secret.
    cfg = worker_config(tmp_path, "proxied", "acme", WABOT_BOT_NAME="proxied",
                        WABOT_NAMESPACE=cluster.ns, POD_NAME="wabot-proxied",
                        WABOT_PROXY_URL=f"ftp://bob:{PROXY_PASSWORD}@proxy.example:21")
    cfg.session_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(cfg, WhatsAppBotSpec.model_validate(cluster.bot("proxied")["spec"]),
                    client=recording_client(str(cfg.session_path)), sessions_enabled=True,
                    terminal=False,
                    kube_api=KubeClient.from_kubeconfig(kube.kubeconfig))
    worker.start()
    try:
        degraded = eventually(
            lambda: (c := cluster.condition("proxied", "Degraded")) and
            c["reason"] == "InvalidProxy" and c, timeout=60, what="Degraded InvalidProxy")
        assert degraded["status"] == "True"
        assert "unsupported proxy scheme 'ftp'" in degraded["message"]
        bot = cluster.bot("proxied")
        assert bot["status"]["phase"] == "Failed"
        assert bot["status"]["worker"]["errorReason"] == "InvalidProxy"
        assert worker.connection.state.sessions_started == 0
        assert PROXY_PASSWORD not in json.dumps(bot)
    finally:
        worker.stop(5.0)
    assert PROXY_PASSWORD not in operator.log()
