"""Every answer of the send-message API, through the real gateway process, the real API server
and the bot's real worker (see conftest.py for what runs where)."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from .conftest import ACME_KEY, GATEWAY_SA, GLOBEX_KEY, World, call

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def chat() -> str:
    """A fresh recipient per test: the per-chat rate limit is 3 a minute."""
    return "1555" + str(uuid.uuid4().int)[:7]


def test_a_message_is_sent_through_the_bot(world: World) -> None:
    to = chat()
    status, _, body = call(world.url("support"), {"to": "+" + to, "text": "Order shipped"})
    assert status == 200, body
    assert body["status"] == "sent" and body["to"] == f"{to}@s.whatsapp.net"
    assert (body["bot"], body["serverName"]) == ("support", "acme")
    assert body["messageId"].startswith("S")
    assert (to, "Order shipped", "") in world.sent()


def test_an_idempotency_key_makes_a_retry_send_once(world: World) -> None:
    to, key = chat(), f"order-{uuid.uuid4()}"
    before = len(world.sent())
    first = call(world.url("support"), {"to": to, "text": "once"}, idem=key)
    again = call(world.url("support"), {"to": to, "text": "once"}, idem=key)
    assert first[0] == again[0] == 200
    assert again[2] == first[2]
    assert again[1].get("Idempotent-Replayed") == "true"
    assert len(world.sent()) == before + 1
    clash = call(world.url("support"), {"to": to, "text": "other text"}, idem=key)
    assert clash[0] == 409 and clash[2]["error"] == "idempotency_key_reused"


def test_another_tenants_bot_is_404_like_a_missing_one(world: World) -> None:
    """A key cannot tell another tenant's bot from a bot that does not exist (finding 12; the
    byte-for-byte comparison against a deleted bot is tests/security/test_gateway_tenancy.py)."""
    message = {"to": chat(), "text": "hi"}
    before = len(world.sent())
    status, _, body = call(world.url("support"), message, key=GLOBEX_KEY)
    assert (status, body) == (404, {"error": "bot_not_found",
                                    "message": f"there is no bot {world.ns}/support"})
    status, _, body = call(world.url("ledger"), message, key=ACME_KEY)
    assert (status, body["error"]) == (404, "bot_not_found")
    assert len(world.sent()) == before  # nothing was sent
    # globex's own bot exists and is reached (it is not connected: 503, not 404).
    status, _, body = call(world.url("ledger"), message, key=GLOBEX_KEY)
    assert status == 503


def test_an_unknown_bot_is_404(world: World) -> None:
    status, _, body = call(world.url("nobody"), {"to": chat(), "text": "hi"})
    assert status == 404 and body["error"] == "bot_not_found"
    assert "nobody" in body["message"]
    status, _, _ = call(world.url("support", namespace="no-such-namespace"),
                        {"to": chat(), "text": "hi"})
    assert status == 404


def test_a_bot_that_is_not_connected_is_503_with_a_clear_body(world: World) -> None:
    status, headers, body = call(world.url("sleepy"), {"to": chat(), "text": "hi"})
    assert status == 503
    assert body["error"] == "bot_not_connected"
    assert body["phase"] in ("Connecting", "Pending")
    assert "sleepy" in body["message"] and "not connected" in body["message"]
    assert int(headers["Retry-After"]) > 0


@pytest.mark.parametrize(("body", "field"), [
    ({"to": "12", "text": "hi"}, "to"),
    ({"to": "15550001111"}, "text"),
    ({"to": "15550001111", "text": "hi", "cc": "x"}, "cc"),
    ("just a string", "body"),
])
def test_a_malformed_body_is_422_naming_the_field(world: World, body: object,
                                                   field: str) -> None:
    status, _, answer = call(world.url("support"), body)
    assert status == 422 and answer["field"] == field, answer
    status, _, answer = call(world.url("support"), None, raw=b"{")
    assert status == 422 and answer["field"] == "body"


def test_no_key_or_an_unknown_key_is_401(world: World) -> None:
    for key in (None, "not-a-key", ACME_KEY + "0"):
        status, headers, body = call(world.url("support"), {"to": chat(), "text": "x"}, key=key)
        assert status == 401 and body["error"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")


def test_a_new_key_works_without_a_restart(world: World) -> None:
    from .conftest import _api_key_secret

    key = f"fresh-{uuid.uuid4().hex}"
    world.cluster.core.create_namespaced_secret(world.keys_ns, _api_key_secret(
        f"acme-fresh-{uuid.uuid4().hex[:6]}", "acme", key))
    status = 401
    for _ in range(50):  # an unknown key re-reads the key list at most every 2 s
        status, _, _ = call(world.url("support"), {"to": chat(), "text": "x"}, key=key)
        if status != 401:
            break
        time.sleep(0.2)
    assert status == 200


def test_the_bots_rate_limit_is_429_with_retry_after(world: World) -> None:
    to = chat()
    answers = [call(world.url("support"), {"to": to, "text": f"n{i}"}) for i in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 429]
    _, headers, body = answers[-1]
    assert body["error"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1 and body["retryAfterSeconds"] >= 1


def test_the_openapi_document_is_served(world: World) -> None:
    with urllib.request.urlopen(f"{world.gateway_url}/openapi.yaml", timeout=5) as resp:
        served = resp.read()
    assert served == (REPO / "gateway" / "openapi.yaml").read_bytes()
    doc = yaml.safe_load(served)
    responses = doc["paths"]["/v1/bots/{namespace}/{bot}/messages"]["post"]["responses"]
    assert {"200", "401", "404", "409", "422", "429", "503"} <= set(responses)
    assert "403" not in responses  # another tenant's bot is a 404


def test_the_gateway_may_read_only_the_bots_api_tokens(world: World) -> None:
    """The per-bot Role the operator made: the gateway's ServiceAccount may get each bot's
    `wabot-N-api` Secret and no other Secret in the bots' namespace (not the API keys, not a
    database DSN), and may not list Secrets there."""
    authz = client.AuthorizationV1Api(world.cluster.api_client)
    user = f"system:serviceaccount:{world.ns}:{GATEWAY_SA}"

    def allowed(verb: str, name: str | None = None) -> bool:
        review = authz.create_subject_access_review(client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(user=user, groups=[
                "system:serviceaccounts", f"system:serviceaccounts:{world.ns}"],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=world.ns, verb=verb, resource="secrets", name=name))))
        return bool(review.status.allowed)

    assert allowed("get", "wabot-support-api")
    assert allowed("get", "wabot-ledger-api")
    assert not allowed("get", "acme-key")
    assert not allowed("get", "some-database-dsn")
    assert not allowed("list")


def test_no_secret_reaches_the_logs_or_the_status(world: World) -> None:
    # Make the gateway log a refused token too (a recreated Secret would look like this).
    call(world.url("support"), {"to": chat(), "text": "x"}, key="wrong-" + ACME_KEY)
    log = world.gateway_log.read_text(errors="replace")
    operator_log = world.operator.log()
    bot = json.dumps(world.cluster.bot("support"))
    for secret in (ACME_KEY, GLOBEX_KEY, world.support_token):
        assert secret not in log
        assert secret not in operator_log
        assert secret not in bot
