"""The fleet's API server hands a route the HTTP kit's request as it arrived, with only the path
normalized: a route that takes its body over (an upload) gets its body buffer and its own body
limit, also when the client adds a trailing slash. The fleet's own routes take no uploads
today; this keeps a future one from receiving an empty body."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from fleet.http import ApiServer, Request, Response, Route
from wabot.httpserver import Limits

TOKEN = "fleet-test-token"


def _sizes(req: Request) -> Response:
    buffer = req.buffer
    body = {"body": len(req.body), "buffer": None if buffer is None else len(buffer),
            "name": req.params.get("name")}
    if buffer is not None:
        buffer.clear()  # what an upload does once it has the file
    return Response(200, json.dumps(body).encode())


@pytest.fixture
def server() -> Iterator[ApiServer]:
    routes = [Route("POST", r"/files/(?P<name>[^/]+)", _sizes, auth=True, max_body=200_000,
                    takes_body=True),
              Route("POST", "/small", _sizes, auth=True)]
    srv = ApiServer("127.0.0.1", 0, routes, token=TOKEN,
                    limits=Limits(max_body=1_000, timeout_s=5.0, max_connections=8)).start()
    yield srv
    srv.stop()


def post(port: int, path: str, body: bytes) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/files/a.bin", "/files/a.bin/"])
def test_an_upload_route_gets_its_body_buffer_and_its_limit(server: ApiServer, path: str) -> None:
    status, seen = post(server.port, path, b"x" * 150_000)
    assert status == 200, seen
    assert seen == {"body": 0, "buffer": 150_000, "name": "a.bin"}


@pytest.mark.parametrize("path", ["/small", "/small/"])
def test_any_other_route_keeps_the_default_limit_and_plain_bytes(server: ApiServer,
                                                                 path: str) -> None:
    assert post(server.port, path, b"y" * 500) == (200, {"body": 500, "buffer": None,
                                                          "name": None})
    status, seen = post(server.port, path, b"y" * 5_000)
    assert status == 413, seen
