"""Sends of every kind through the gateway to a real worker (issue 24): a multipart upload may
be as large as the worker's largest file, checked before a byte of it is read and only after
the key and the tenant; JSON sends of the new kinds are validated at the gateway; the chat
actions (read, presence) are forwarded like every bot route. The bot's lookups come from a
table (the cluster tests cover the real API server); the worker is the real one, recording at
neonize's send_message and upload."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import MAX_UPLOAD, Gateway
from gateway.config import GatewayConfig
from gateway.kube import BotView
from tests.support import media_files as files
from tests.worker.conftest import Harness, make_worker  # noqa: F401 (the fixture)

KEY = "k" * 32
OTHER_KEY = "o" * 32
TOKEN = "t" * 32


class TableLookup:
    """Bot b (tenant acme) runs on the worker at `port`; the other key is tenant globex's."""

    def __init__(self, port: int) -> None:
        self.port = port

    def bot(self, namespace: str, name: str) -> BotView | None:
        phase = {"b": "Connected", "sleepy": "Connecting"}.get(name)
        return BotView("acme", phase, f"wabot-{name}") if phase else None

    def pod_ip(self, namespace: str, name: str) -> str | None:
        return "127.0.0.1"

    def bot_token(self, namespace: str, bot: str) -> str | None:
        return TOKEN

    def api_keys(self, namespace: str) -> dict[str, str]:
        return {hashlib.sha256(KEY.encode()).hexdigest(): "acme",
                hashlib.sha256(OTHER_KEY.encode()).hexdigest(): "globex"}


def gateway_for(h: Harness) -> Gateway:
    assert h.worker.http is not None
    cfg = GatewayConfig(keys_namespace="k", timeout_s=30.0,
                        worker_url_template=f"http://127.0.0.1:{h.worker.http.port}")
    return Gateway(cfg, TableLookup(h.worker.http.port))


def run(h: Harness, steps: Callable[[TestClient[Any, Any], int], Any]) -> Any:
    async def main() -> Any:
        server = TestServer(gateway_for(h).app())
        async with TestClient(server) as client:
            return await steps(client, server.port or 0)
    return asyncio.run(main())


def auth(key: str = KEY, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def test_an_upload_goes_through_the_gateway_to_the_worker(
        make_worker: Callable[..., Harness]) -> None:  # noqa: F811
    h = make_worker(env={"WABOT_API_TOKEN": TOKEN})
    body, ctype = files.multipart(b'{"to": "15550001111", "image": {"caption": "hi"}}',
                                  files.png(), content_type="image/png")

    async def steps(client: TestClient[Any, Any], _port: int) -> Any:
        ok = await client.post("/v1/bots/ns/b/messages", data=body,
                               headers=auth(**{"Content-Type": ctype, "Idempotency-Key": "u1"}))
        again = await client.post("/v1/bots/ns/b/messages", data=body,
                                  headers=auth(**{"Content-Type": ctype,
                                                  "Idempotency-Key": "u1"}))
        other = await client.post("/v1/bots/ns/b/messages", data=body,
                                  headers=auth(OTHER_KEY, **{"Content-Type": ctype}))
        return (ok.status, await ok.json(), again.headers.get("Idempotent-Replayed"),
                other.status)

    status, answer, replayed, other = run(h, steps)
    assert status == 200 and answer["type"] == "image", answer
    assert replayed == "true"
    assert other == 404  # another tenant's key: the bot does not exist for it
    assert h.client.uploads == [files.png()] and len(h.client.sent) == 1


def test_an_oversized_or_unauthenticated_upload_is_refused_before_it_is_read(
        make_worker: Callable[..., Harness]) -> None:  # noqa: F811
    h = make_worker(env={"WABOT_API_TOKEN": TOKEN})

    async def raw(port: int, headers: dict[str, str]) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST /v1/bots/ns/b/messages HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        await writer.drain()  # no body follows: an answer proves none was waited for
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        return answer

    async def steps(_client: TestClient[Any, Any], port: int) -> Any:
        ctype = "multipart/form-data; boundary=x"
        too_big = await raw(port, auth(**{"Content-Type": ctype,
                                          "Content-Length": str(MAX_UPLOAD + 1)}))
        stranger = await raw(port, {"Content-Type": ctype, "Content-Length": "1000000"})
        return too_big, stranger

    too_big, stranger = run(h, steps)
    assert too_big.startswith(b"HTTP/1.1 413") and b"body_too_large" in too_big
    assert stranger.startswith(b"HTTP/1.1 401")
    assert h.client.sent == []


def test_json_sends_of_every_kind_are_validated_at_the_gateway(
        make_worker: Callable[..., Harness]) -> None:  # noqa: F811
    h = make_worker(env={"WABOT_API_TOKEN": TOKEN})

    async def steps(client: TestClient[Any, Any], _port: int) -> Any:
        out = []
        for body in ({"to": "15550001111", "poll": {"question": "Q", "options": ["a", "a"]}},
                     {"to": "15550001111", "image": {}},
                     {"to": "15550001111", "location": {"latitude": 52.5, "longitude": 13.4}},
                     {"to": "15550001111", "text": "x" * 70_000}):
            resp = await client.post("/v1/bots/ns/b/messages", data=json.dumps(body),
                                     headers=auth(**{"Content-Type": "application/json"}))
            out.append((resp.status, await resp.json()))
        read = await client.post("/v1/bots/ns/b/chats/15550001111/presence",
                                 json={"state": "typing"}, headers=auth())
        out.append((read.status, await read.json()))
        return out

    (poll, image, location, big, presence) = run(h, steps)
    assert poll[0] == 422 and poll[1]["field"] == "poll.options"
    assert image[0] == 422 and image[1]["field"] == "image.url"
    assert location[0] == 200 and location[1]["type"] == "location"
    assert big[0] == 413
    assert presence[0] == 200 and h.client.presences == [("15550001111", 0, 0)]
    assert len(h.client.sent) == 1  # only the location reached WhatsApp


def test_a_method_the_document_does_not_list_is_405_whatever_the_bots_phase(
        make_worker: Callable[..., Harness]) -> None:  # noqa: F811
    h = make_worker(env={"WABOT_API_TOKEN": TOKEN})

    async def steps(client: TestClient[Any, Any], _port: int) -> Any:
        out = []
        for method, bot in (("PUT", "b"), ("PUT", "sleepy"), ("OPTIONS", "b")):
            resp = await client.request(method, f"/v1/bots/ns/{bot}/chats/15550001111/read",
                                        json={"messageIds": ["A"]}, headers=auth())
            out.append((resp.status, resp.headers.get("Allow")))
        return out

    assert run(h, steps) == [(405, "POST")] * 3
