"""Issue 21, finding 3, generalised: whatever WhatsAppBot the API server admits (deep, wide,
huge, odd unicode), the operator neither dies nor stalls the other bots, now or after a
restart. The objects are generated (seeded, so a failure replays) and applied as the
restricted tenant user; each admitted one must converge to a status of its own."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.security import record
from tests.security.conftest import TenantUser
from wabot.naming import MAX_BOT_NAME

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
SECTION = record.SECTION
SEED = 21
ODD = 12
# Characters that break naive code: astral emoji, combining marks, right-to-left text,
# zero-width joiners, a byte-order mark, line and paragraph separators, quotes, backslashes.
WEIRD = ("\U0001f600\U0001f469\u200d\U0001f467\u0301\u202e\u200d\ufeff\u2028\u2029"
         "\u05e2\u05d1\u05e8\u05d9\u05ea\u4e2d\u6587\"'\\{}$%\t\n")


def text(rng: random.Random, size: int) -> str:
    pool = WEIRD + string.ascii_letters
    return "".join(rng.choice(pool) for _ in range(size))


def wide_affinity(rng: random.Random) -> dict[str, Any]:
    """Every list of a core/v1 Affinity at its bound (the CRD's maxItems)."""
    expr = [{"key": f"k{i}.example/x", "operator": rng.choice(["In", "NotIn"]),
             "values": [f"v{j}" for j in range(64)]} for i in range(16)]
    term = {"matchExpressions": expr}
    pod_term = {"topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {f"l{i}": "x" for i in range(32)},
                                  "matchExpressions": expr[:4]}}
    return {
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1 + i, "preference": term} for i in range(16)]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": pod_term} for _ in range(16)]},
    }


def odd_spec(rng: random.Random, kind: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"serverName": "acme"}
    if kind == 0:  # the most custom commands, each with the longest reply
        spec["commands"] = {"custom": [
            {"name": f"c{i}", "response": text(rng, 4096), "aliases": [f"a{i}x{j}"
                                                                      for j in range(10)]}
            for i in range(100)]}
    elif kind == 1:  # the most env entries, each at its longest
        spec["env"] = [{"name": f"E_{i}", "value": text(rng, 8192)} for i in range(64)]
    elif kind == 2:
        spec["affinity"] = wide_affinity(rng)
    elif kind == 3:  # unicode everywhere text is free
        spec["settings"] = {"welcomeText": text(rng, 4096)}
        spec["features"] = {text(rng, 20): rng.random() < 0.5 for _ in range(64)}
        spec["commands"] = {"prefix": rng.choice(["é", "😀", "!!!", "ñ"]),
                            "custom": [{"name": "x", "response": text(rng, 100),
                                        "description": text(rng, 200)}]}
    else:  # a mix at random
        spec["rateLimit"] = {"perChatPerMinute": rng.randint(1, 600),
                             "perBotPerMinute": rng.randint(1, 6000)}
        spec["suspend"] = rng.random() < 0.3
        spec["env"] = [{"name": f"X{i}", "value": text(rng, rng.randint(0, 3000))}
                       for i in range(rng.randint(0, 20))]
        spec["settings"] = {"maxMessageLength": rng.randint(1, 65536)}
    return spec


def test_admitted_odd_objects_never_stop_the_other_bots(
        cluster: Cluster, start_operator: Callable[..., OperatorProcess],
        tenant_user: TenantUser, request: pytest.FixtureRequest) -> None:
    rng = random.Random(SEED)
    op = start_operator()
    for i in range(2):
        tenant_user.create_bot(f"steady-{i}", {"serverName": "acme"})
    admitted: list[str] = []
    for i in range(ODD):
        name = f"odd-{i}-" + "x" * (MAX_BOT_NAME - len(f"odd-{i}-")) if i % 3 == 0 else f"odd-{i}"
        try:
            tenant_user.create_bot(name, odd_spec(rng, i % 5))
        except ApiException as e:
            assert e.status in (400, 413, 422), e.body  # refused whole, with a reason
            continue
        admitted.append(name)
    assert len(admitted) >= ODD - 2, "the generator should mostly make admissible objects"

    def converged(names: list[str]) -> bool:
        for name in names:
            bot = cluster.bot(name)
            status = bot.get("status") or {}
            if status.get("observedGeneration") != bot["metadata"]["generation"]:
                return False
        return True

    eventually(lambda: converged(admitted), timeout=120, what="every odd bot has a status",
               explain=lambda: "\n".join(f"{n}: {cluster.bot(n).get('status')}"
                                         for n in admitted) + "\n" + op.log())
    assert op.healthy()
    # The others were not held up, and a bot made after them still comes up at once.
    tenant_user.create_bot("after", {"serverName": "acme"})
    for name in ("steady-0", "steady-1", "after"):
        eventually(lambda n=name: cluster.pod(f"wabot-{n}"), what=f"{name}'s pod")  # type: ignore[misc]

    # A restarted operator starts with all of them in place, and still serves a new bot.
    op.stop()
    op2 = start_operator()
    tenant_user.create_bot("after-restart", {"serverName": "acme"})
    eventually(lambda: cluster.pod("wabot-after-restart"), timeout=90,
               what="a new bot's pod after the operator's restart", explain=op2.log)
    assert op2.healthy()
    rights = request.node.callspec.params["operator_rights"]
    record.finding("3b", f"odd admitted objects, seed {SEED} (operator with {rights} rights)",
                   f"{len(admitted)}/{ODD} admitted (every list at its bound, the longest "
                   f"strings, odd unicode), all with a status; other bots and a restarted "
                   f"operator unaffected")
