"""schemathesis against gateway/openapi.yaml, on the live gateway of conftest.World.

Generated requests (valid and invalid bodies, headers, path parameters; requests without the
key; methods the API does not have) go to the real gateway process; every answer must match
the document (status code documented, body and headers as declared, content type), and none
may be a server error except the documented 503 (a bot that cannot send right now). Half of
the cases are aimed at the test's real bots (connected, not connected, another tenant's), so
the 200, 409, 429 and 503 paths are exercised too, not only 404 (which is also the answer
for another tenant's bot).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
)

from .conftest import ACME_KEY, World

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
# A session action changes the bot for every later case (a logout parks it, a restart takes
# it off Connected): they have their own tests (tests/worker/test_session_control.py,
# test_session_kube.py, tests/gateway/test_account_cluster.py).
schema = schemathesis.openapi.from_path(REPO / "gateway" / "openapi.yaml").exclude(
    operation_id=["sessionLogout", "sessionRestart", "sessionPairing"])
BOTS = ("support", "sleepy", "ledger", None)
SEEN: dict[int, int] = {}


@schema.parametrize()
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_the_gateway_keeps_its_openapi_contract(case: schemathesis.Case, world: World) -> None:
    params = case.path_parameters or {}
    pick = BOTS[len(repr(case.body)) % len(BOTS)]
    excluded = [not_a_server_error]  # 503 is documented (not connected / unreachable)
    if case.operation.definition.raw.get("operationId") in ("sendMessage", "markRead"):
        # Valid JSON may still be refused with a documented 422 the schema cannot foresee: a
        # media URL the bot may not or cannot fetch (every generated one), a caption on a
        # kind without one, a group's read receipt without its sender (descriptions say so).
        excluded.append(positive_data_acceptance)
    if pick is not None and params:
        case.path_parameters = {**params, "namespace": world.ns, "bot": pick}
    headers = {"Authorization": f"Bearer {ACME_KEY}"}
    if pick is not None and params:
        # The test replaced the path and the key with valid ones: if those were the parts
        # schemathesis had made invalid, the request is no longer negative and a 2xx is right.
        excluded.append(negative_data_rejection)
    response = case.call(base_url=world.gateway_url, headers=headers)
    SEEN[response.status_code] = SEEN.get(response.status_code, 0) + 1
    assert response.status_code < 500 or response.status_code == 503, (
        f"{response.status_code} {response.text[:500]}")
    case.validate_response(response, excluded_checks=excluded, headers=headers)


def test_the_run_reached_the_interesting_answers(world: World) -> None:
    """Not vacuous: the generated requests got past validation to real bots and back."""
    assert {200, 404, 422, 503} <= set(SEEN), SEEN
    assert 403 not in SEEN, SEEN
    assert sum(SEEN.values()) >= 100, SEEN
    print("schemathesis answers:", dict(sorted(SEEN.items())))
