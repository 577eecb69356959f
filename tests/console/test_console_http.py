"""The console's sessions over plain HTTP, between two gateway replicas: what a browser is
trusted with (the cookie's attributes, the headers) and what no forged request gets."""

from __future__ import annotations

import hashlib
import http.client as http_client
import json
import os
import subprocess
import sys
from http.cookies import Morsel, SimpleCookie

import pytest

from tests.conftest import REPO
from wabot.spec import API_GROUP, API_VERSION, PLURAL

from .conftest import ACME_KEY, World, _api_key_secret
from .helpers import eventually, http

pytestmark = [pytest.mark.cluster]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def sign_in(base: str, kind: str, credential: str) -> tuple[int, Morsel[str] | None]:
    status, headers, _ = http(f"{base}/console/api/login", method="POST",
                              body={"kind": kind, "credential": credential}, origin=base)
    jar = SimpleCookie(headers.get("Set-Cookie", ""))
    return status, jar.get("wabot_console")


def test_a_cookie_from_one_replica_is_good_at_the_other(world: World) -> None:
    a, b = world.gateways
    status, cookie = sign_in(a, "key", ACME_KEY)
    assert status == 200 and cookie is not None
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert ACME_KEY not in cookie.value
    assert hashlib.sha256(ACME_KEY.encode()).hexdigest() not in cookie.value
    status, _, body = http(f"{b}/console/api/me", cookie=f"wabot_console={cookie.value}")
    assert status == 200 and b'"name": "acme"' in body
    # One changed character and it is nobody's.
    forged = cookie.value[:-2] + ("A" if cookie.value[-2] != "A" else "B") + cookie.value[-1]
    assert http(f"{b}/console/api/me", cookie=f"wabot_console={forged}")[0] == 401


def test_a_cluster_token_signs_in_and_a_bad_one_does_not(world: World) -> None:
    status, cookie = sign_in(world.url, "token", world.tokens["viewer"])
    assert status == 200 and cookie is not None
    assert world.tokens["viewer"] not in cookie.value
    assert sign_in(world.url, "token", world.tokens["viewer"][:-4] + "AAAA")[0] == 401
    assert sign_in(world.url, "key", "not-a-key")[0] == 401


def test_sign_in_from_another_site_is_refused(world: World) -> None:
    status, _, body = http(f"{world.url}/console/api/login", method="POST",
                           body={"kind": "key", "credential": ACME_KEY},
                           origin="http://evil.example")
    assert status == 403, body
    status, _, _ = http(f"{world.url}/console/api/login", method="POST",
                        body={"kind": "key", "credential": ACME_KEY})
    assert status == 403  # no Origin at all


def test_an_action_from_another_site_is_refused(world: World) -> None:
    _, cookie = sign_in(world.url, "token", world.tokens["admin"])
    assert cookie is not None
    status, _, _ = http(f"{world.url}/console/api/bots/{world.ns}/sleepy/actions/suspend",
                        method="POST", cookie=f"wabot_console={cookie.value}",
                        origin="http://evil.example")
    assert status == 403
    assert not world.bot("sleepy")["spec"].get("suspend")


def test_deleting_a_tenant_key_ends_its_sessions(world: World) -> None:
    key = "temp-console-key-4f6e8d0c2b1a3957"
    world.cluster.core.create_namespaced_secret(world.keys_ns,
                                                _api_key_secret("temp-key", "acme", key))
    _, cookie = eventually(lambda: (r := sign_in(world.url, "key", key))[0] == 200 and r,
                           timeout=10, what="the new key works")
    assert cookie is not None
    me = f"{world.url}/console/api/me"
    assert http(me, cookie=f"wabot_console={cookie.value}")[0] == 200
    world.cluster.core.delete_namespaced_secret("temp-key", world.keys_ns)
    eventually(lambda: http(me, cookie=f"wabot_console={cookie.value}")[0] == 401,
               timeout=15, what="the session ends with its key")


def test_every_console_answer_carries_the_security_headers(world: World) -> None:
    for path in ("/console/", "/console/static/console.js", "/console/api/me",
                 "/console/nothing-here"):
        _, headers, _ = http(f"{world.url}{path}")
        assert headers.get("Content-Security-Policy") == CSP, path
        assert headers.get("X-Content-Type-Options") == "nosniff"
        assert headers.get("X-Frame-Options") == "DENY"
    status, _, page = http(f"{world.url}/console/")
    assert status == 200
    # No inline script: every <script> names a file of this origin.
    assert page.count(b"<script") == page.count(b'<script src="/console/static/')
    assert b"style=" not in page


def test_console_on_without_a_secret_is_a_clear_setting_error(world: World) -> None:
    env = {**os.environ, "KUBECONFIG": str(world.kube.kubeconfig), "PYTHONPATH": str(REPO),
           "WABOT_GATEWAY_KEYS_NAMESPACE": world.keys_ns, "WABOT_GATEWAY_PORT": "0",
           "WABOT_GATEWAY_HOST": "127.0.0.1", "WABOT_GATEWAY_CONSOLE": "true",
           "WABOT_GATEWAY_CONSOLE_SECRET": "short"}
    out = subprocess.run([sys.executable, "-m", "gateway"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "WABOT_GATEWAY_CONSOLE_SECRET: at least 32 characters" in out.stderr
    assert "Traceback" not in out.stderr



def test_plain_http_from_afar_is_told_to_use_https(world: World) -> None:
    """A Secure cookie is dropped by a browser over plain HTTP: rather than a sign-in that
    silently does not stick, the answer says what to do. Behind TLS the cookie is Secure."""
    host = "console.example"
    body = {"kind": "key", "credential": ACME_KEY}
    status, _, text = http(f"{world.url}/console/api/login", method="POST", body=body,
                           origin=f"http://{host}", headers={"Host": host})
    assert status == 400 and b"HTTPS" in text
    status, headers, _ = http(f"{world.url}/console/api/login", method="POST", body=body,
                              origin=f"https://{host}",
                              headers={"Host": host, "X-Forwarded-Proto": "https"})
    assert status == 200
    assert SimpleCookie(headers["Set-Cookie"])["wabot_console"]["secure"]


def test_guessing_keys_is_slowed_down(world: World) -> None:
    other = world.gateways[1]  # the throttle is per replica: the other tests sign in at [0]
    answers = [sign_in(other, "key", f"guess-{i}")[0] for i in range(21)]
    assert answers[:20] == [401] * 20 and answers[20] == 429
    assert sign_in(other, "key", ACME_KEY)[0] == 429  # for a minute, even a good key


def _metric(base: str, name: str) -> float:
    _, _, text = http(f"{base}/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in {base}/metrics")


def test_open_pages_share_the_one_watch(world: World) -> None:
    """Four open pages on a replica: still one watch per served namespace and no further
    LIST of the bots, while statuses change and every page hears of it."""
    base = world.gateways[1]  # no browser page is open here
    _, cookie = sign_in(world.url, "key", ACME_KEY)  # signed in at the other replica
    assert cookie is not None
    lists = _metric(base, "wabot_console_watch_lists_total")
    assert _metric(base, "wabot_console_watches") == 2  # namespaces A and B
    streams = []
    for _ in range(4):
        conn = http_client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=30)
        conn.request("GET", "/console/api/stream",
                     headers={"Cookie": f"wabot_console={cookie.value}"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.readline().startswith(b"event: rows")  # the snapshot
        streams.append((conn, resp))
    try:
        assert _metric(base, "wabot_console_streams") == 4
        for n in range(3):  # namespace B has no operator: this test is its status's writer
            world.cluster.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, world.ns_b, PLURAL, "branch",
                {"status": {"restarts": 10 + n}})
        for _, resp in streams:  # each page hears of it
            eventually(lambda r=resp: b'"restarts":12' in r.readline(), timeout=20,
                       what="the update on every page")
        assert _metric(base, "wabot_console_watch_lists_total") == lists
        assert _metric(base, "wabot_console_watches") == 2
    finally:
        for conn, _ in streams:
            conn.close()
    # A closed page is noticed at the next write to it: an update, or the 20 s keep-alive.
    world.cluster.custom.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, world.ns_b, PLURAL, "branch", {"status": {"restarts": 0}})
    eventually(lambda: _metric(base, "wabot_console_streams") == 0, timeout=30,
               what="closed pages forgotten")


def test_a_new_pairing_code_for_a_bot_that_pairs_by_code(world: World) -> None:
    """The worker's "pairing" request means a QR code; for a bot whose spec pairs by code the
    console asks for a new session in that mode instead (its code follows in the status)."""
    world.cluster.patch_bot("sleepy", {"pairing": {"method": "code",
                                                   "phoneNumber": "4915112345678"}})
    try:
        _, cookie = sign_in(world.url, "token", world.tokens["admin"])
        assert cookie is not None
        jar = f"wabot_console={cookie.value}"
        _, _, me = http(f"{world.url}/console/api/me", cookie=jar)
        csrf = json.loads(me)["csrf"]
        status, _, body = http(f"{world.url}/console/api/bots/{world.ns}/sleepy/actions/pairing",
                               method="POST", cookie=jar, origin=world.url,
                               headers={"X-CSRF-Token": csrf})
        assert status == 200, body
        rid = json.loads(body)["requestId"]
        notes = world.bot("sleepy")["metadata"]["annotations"]
        assert notes["wabot.io/session-action"] == "restart"
        assert notes["wabot.io/session-action-id"] == rid
        who = f"user system:serviceaccount:{world.ns}:admin"
        eventually(lambda: f"a new pairing code requested from the console by {who} "
                           f"(request {rid})" in [
            e.message for e in world.cluster.core.list_namespaced_event(
                world.ns, field_selector="involvedObject.name=sleepy").items],
                   timeout=10, what="the Event")
    finally:
        world.cluster.patch_bot("sleepy", {"pairing": {"method": "qr", "phoneNumber": None}})
