"""An upload is held once while it is sent: the HTTP kit hands a route that takes its body over
(`Route.takes_body`) one bytearray, and the send request empties it once the file is out of it
(the memory this saves: `python -m bench.upload_peak`). Every other route still gets bytes."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from botworker.runtime import send_request
from tests.support import media_files as files
from wabot import httproutes
from wabot.httpserver import HttpServer, Limits, Request, Response


def test_the_send_request_takes_the_file_out_and_empties_the_body() -> None:
    data = bytes(range(256)) * 1024
    body, ctype = files.multipart(json.dumps({"to": "15550001111", "document": {}}).encode(),
                                  data, filename="a.bin")
    buffer = bytearray(body)
    req = Request("POST", "/v1/messages", {}, {"content-type": ctype}, b"", buffer=buffer)
    parsed = send_request.read(req)
    assert isinstance(parsed, send_request.SendRequest) and parsed.upload is not None
    assert parsed.upload.data == data and type(parsed.upload.data) is bytes  # what neonize takes
    assert parsed.upload.filename == "a.bin"
    assert len(buffer) == 0  # the body's buffer is free before the file is sent


def test_a_json_send_and_a_broken_upload_read_from_the_buffer_too() -> None:
    ok = Request("POST", "/v1/messages", {}, {"content-type": "application/json"}, b"",
                 buffer=bytearray(b'{"to": "15550001111", "text": "hi"}'))
    assert isinstance(send_request.read(ok), send_request.SendRequest)
    cut = bytearray(files.multipart(b'{"to": "1"}', b"x" * 100)[0][:-20])
    refused = send_request.read(Request(
        "POST", "/v1/messages", {}, {"content-type": "multipart/form-data; boundary="
                                     "wabot-test-boundary"}, b"", buffer=cut))
    assert isinstance(refused, Response) and refused.status == 422


def test_only_a_route_that_takes_its_body_gets_a_buffer() -> None:
    seen: dict[str, Any] = {}

    def keep(name: str) -> httproutes.Handler:
        def handle(req: Request) -> Response:
            seen[name] = (req.body, req.buffer)
            return Response(200, b"{}")
        return handle

    routes = [httproutes.Route("POST", "/upload", keep("upload"), max_body=1 << 20,
                               takes_body=True),
              httproutes.Route("POST", "/other", keep("other"), max_body=1 << 20)]
    limits = httproutes.limits_for(routes, Limits())
    server = HttpServer("127.0.0.1", 0, lambda req: httproutes.dispatch(
        routes, None, req, lambda s, c, m, h: Response(s, b"{}")), limits=limits).start()
    try:
        payload = b"z" * 200_000
        for path in ("/upload", "/other"):
            req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=payload,
                                         method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
    finally:
        server.stop()
    assert seen["upload"] == (b"", bytearray(payload))
    assert seen["other"] == (payload, None) and type(seen["other"][0]) is bytes
