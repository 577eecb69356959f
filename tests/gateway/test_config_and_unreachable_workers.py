"""The gateway's settings and its answers when a bot's worker cannot be reached or is too slow
(the cluster tests in tests/gateway cover the rest against the real API server). Here the
lookups come from a table, and the "worker" is a real local HTTP server that hangs, or a port
nobody listens on."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway
from gateway.config import ConfigError, GatewayConfig
from gateway.kube import BotView
from tests.support.net import free_port

KEY = "k" * 32


def test_config_from_env_and_its_errors() -> None:
    cfg = GatewayConfig.from_env({"WABOT_GATEWAY_KEYS_NAMESPACE": "wabot-system",
                                  "WABOT_GATEWAY_NAMESPACES": "team-a, team-b",
                                  "WABOT_GATEWAY_TIMEOUT_SECONDS": "5"})
    assert cfg.namespaces == ("team-a", "team-b") and cfg.timeout_s == 5.0
    assert cfg.worker_url(pod_ip="10.1.2.3", namespace="n", bot="b") == "http://10.1.2.3:8080"
    assert cfg.worker_url(pod_ip="fd00::1", namespace="n", bot="b") == "http://[fd00::1]:8080"
    with pytest.raises(ConfigError, match="WABOT_GATEWAY_PORT"):
        GatewayConfig.from_env({"WABOT_GATEWAY_KEYS_NAMESPACE": "x",
                                "WABOT_GATEWAY_PORT": "http"})
    with pytest.raises(ConfigError, match="WORKER_URL_TEMPLATE"):
        GatewayConfig.from_env({"WABOT_GATEWAY_KEYS_NAMESPACE": "x",
                                "WABOT_GATEWAY_WORKER_URL_TEMPLATE": "http://{nodeName}:1"})


class TableLookup:
    def __init__(self, port: int) -> None:
        self.port = port

    def bot(self, namespace: str, name: str) -> BotView | None:
        return BotView("acme", "Connected", "wabot-b") if name == "b" else None

    def pod_ip(self, namespace: str, name: str) -> str | None:
        return "127.0.0.1"

    def bot_token(self, namespace: str, bot: str) -> str | None:
        return "t" * 32

    def api_keys(self, namespace: str) -> dict[str, str]:
        import hashlib

        return {hashlib.sha256(KEY.encode()).hexdigest(): "acme"}


async def _post(port: int, timeout_s: float) -> tuple[int, dict[str, Any]]:
    cfg = GatewayConfig(keys_namespace="k", timeout_s=timeout_s,
                        worker_url_template=f"http://127.0.0.1:{port}")
    gateway = Gateway(cfg, TableLookup(port))
    async with TestClient(TestServer(gateway.app())) as client:
        resp = await client.post("/v1/bots/ns/b/messages",
                                 json={"to": "15550001111", "text": "hi"},
                                 headers={"Authorization": f"Bearer {KEY}"})
        return resp.status, json.loads(await resp.read())


def test_a_worker_that_cannot_be_reached_is_503() -> None:
    status, body = asyncio.run(_post(free_port(), 5.0))
    assert status == 503 and body["error"] == "bot_unreachable"


def test_a_worker_that_does_not_answer_in_time_is_504() -> None:
    release = threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(10)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, body = asyncio.run(_post(server.server_address[1], 0.5))
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert status == 504 and body["error"] == "bot_timeout"
