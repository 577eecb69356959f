"""The spec models are strict: a wrong type is refused, as the API server refuses it, instead of
being coerced by pydantic's lax mode ("yes" -> true, "20" -> 20, true -> 1). What Kubernetes
hands the operator and the worker (exact JSON types) still parses, and the status models, which
read enum values and timestamps from JSON strings, stay lax."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from wabot.bot_commands import CommandsSpec
from wabot.spec import (
    ResourceList,
    ResourcesSpec,
    WhatsAppBotSpec,
    WhatsAppBotStatus,
    WorkerReport,
    WorkerState,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("spec", "loc"), [
    ({"suspend": "yes"}, ("suspend",)),
    ({"suspend": "false"}, ("suspend",)),
    ({"suspend": 0}, ("suspend",)),
    ({"rateLimit": {"perChatPerMinute": "20"}}, ("rateLimit", "perChatPerMinute")),
    ({"rateLimit": {"perChatPerMinute": True}}, ("rateLimit", "perChatPerMinute")),
    ({"rateLimit": {"perBotPerMinute": 60.0}}, ("rateLimit", "perBotPerMinute")),
    ({"settings": {"autoRead": "on"}}, ("settings", "autoRead")),
    ({"settings": {"maxMessageLength": "4096"}}, ("settings", "maxMessageLength")),
    ({"features": {"beta": 1}}, ("features", "beta")),
    ({"tolerations": [{"key": "k", "tolerationSeconds": "5"}]},
     ("tolerations", 0, "tolerationSeconds")),
    ({"commands": {"builtins": ("help", "ping")}}, ("commands", "builtins")),
])
def test_wrong_types_are_refused_not_coerced(spec: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as err:
        WhatsAppBotSpec.model_validate({"serverName": "acme", **spec})
    (error,) = err.value.errors()
    assert error["loc"][:len(loc)] == loc and error["type"].endswith("_type"), error


def test_what_kubernetes_hands_over_still_parses() -> None:
    """The operator and the worker get the spec as the API server's JSON: exact types."""
    for name in ("support-bot.yaml", "sales-bot.yaml", "paused-bot.yaml"):
        for doc in yaml.safe_load_all((REPO / "samples" / name).read_text()):
            WhatsAppBotSpec.model_validate(json.loads(json.dumps(doc["spec"])))
    spec = WhatsAppBotSpec.model_validate(json.loads(json.dumps({
        "serverName": "acme", "suspend": False, "rateLimit": {"perChatPerMinute": 12},
        "features": {"beta": True}, "tolerations": [{"key": "k", "operator": "Exists",
                                                      "tolerationSeconds": 30}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
        "commands": {"prefix": "!", "builtins": ["help"], "custom": [
            {"name": "hours", "response": "9-5"}]},
        "resources": {"limits": {"cpu": "500m"}},
    })))
    assert spec.rate_limit.per_chat_per_minute == 12 and spec.features == {"beta": True}
    # ... and so does a round trip through the model's own dump (the fleet's file: source)
    again = WhatsAppBotSpec.model_validate(spec.model_dump(mode="json", by_alias=True))
    assert again == spec


def test_python_construction_is_unchanged() -> None:
    """Keyword construction with the right types, nested models as instances or dicts."""
    spec = WhatsAppBotSpec(server_name="acme", bot_id="b1",
                           commands=CommandsSpec(prefix="?"),
                           resources=ResourcesSpec(limits=ResourceList(cpu="1")))
    assert spec.commands.prefix == "?" and spec.resources.limits.cpu == "1"
    assert WhatsAppBotSpec.model_validate(
        {"server_name": "acme", "settings": {"ignore_groups": False}}
    ).settings.ignore_groups is False


def test_status_models_stay_lax_for_json_strings() -> None:
    raw = {"state": "Connected", "updatedAt": "2026-01-01T00:00:00Z",
           "lastConnectedAt": "2026-01-01T00:00:00+00:00", "reconnects": 2}
    report = WorkerReport.model_validate(raw)
    assert report.state is WorkerState.CONNECTED and report.updated_at.year == 2026
    status = WhatsAppBotStatus.model_validate({"phase": "Pending", "worker": raw, "conditions": [
        {"type": "Ready", "status": "False", "reason": "PodPending",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    assert status.phase == "Pending"
