"""wabot/spec_view.py, the worker's pydantic-free copy of the spec, is the models' own: generated
from wabot/spec.py (drift fails here, like the CRD's), and what it reads from a spec is what the
pydantic model reads, defaults included. A spec it cannot read is a SpecError naming the field.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wabot import spec_codegen, spec_view
from wabot.spec import WhatsAppBotSpec
from wabot.specread import SpecError, read

REPO = Path(__file__).resolve().parents[2]

RICH = {
    "serverName": "acme", "botId": "sales", "suspend": False,
    "pairing": {"method": "code", "phoneNumber": "4915112345678"},
    "commands": {"prefix": "#", "builtins": ["ping"], "plugins": ["notes"], "custom": [
        {"name": "hours", "aliases": ["open"], "response": "9-17", "description": "Hours"},
        {"name": "map", "location": {"latitude": "52.52", "longitude": "13.40", "name": "HQ"}},
        {"name": "menu2", "document": {"url": "https://example.com/m.pdf", "fileName": "m.pdf"}},
    ]},
    "settings": {"ignoreGroups": False, "autoRead": True, "welcomeText": "hi",
                 "maxMessageLength": 100},
    "features": {"beta": True, "old": False},
    "webhook": {"url": "https://hooks.example.com/x", "secretRef": {"name": "hook"},
                "events": ["message", "command", "call"]},
    "rateLimit": {"perChatPerMinute": 5},
    "media": {"download": "full", "maxBytes": 2048},
    "resources": {"requests": {"memory": "64Mi"}},
    "storage": {"retainPolicy": "Delete"},
    "env": [{"name": "TZ", "value": "UTC"}],
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
    "database": {"secretRef": {"name": "db", "key": "dsn"}},
    "proxy": {"secretRef": {"name": "proxy"}},
}


def _plain(value: Any) -> Any:
    """A pydantic dump or a dataclass as plain data, lists and tuples alike."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def test_committed_view_is_the_generated_one() -> None:
    diffs = spec_codegen.differences(REPO)
    assert not diffs, "run `python -m wabot.crd write` and commit wabot/*_view.py\n" + (
        diffs[0][:4000])


def test_check_command_reports_a_hand_edited_view(tmp_path: Path) -> None:
    assert spec_codegen.write(tmp_path) == [Path(t) for t in spec_codegen.TARGETS]
    assert spec_codegen.differences(tmp_path) == []
    view = tmp_path / "wabot" / "spec_view.py"
    view.write_text(view.read_text().replace("per_chat_per_minute: int = 20",
                                             "per_chat_per_minute: int = 30"))
    (diff,) = spec_codegen.differences(tmp_path)
    assert "-    per_chat_per_minute: int = 30" in diff
    assert "+    per_chat_per_minute: int = 20" in diff
    assert spec_codegen.write(tmp_path) == [Path("wabot/spec_view.py")]


def _samples() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"serverName": "acme"}, RICH]
    for name in ("support-bot.yaml", "sales-bot.yaml", "paused-bot.yaml"):
        out += [d["spec"] for d in yaml.safe_load_all((REPO / "samples" / name).read_text())]
    return out


@pytest.mark.parametrize("raw", _samples(), ids=lambda raw: str(raw.get("botId", "sample")))
def test_the_view_reads_what_the_model_reads(raw: dict[str, Any]) -> None:
    model = WhatsAppBotSpec.model_validate(raw)
    view = read(spec_view.WhatsAppBotSpec, raw)
    assert _plain(view) == _plain(model.model_dump())
    # What the fleet tiers hand a worker (fleet/botsfile.py spec_document: the model dumped by
    # alias, without nulls) reads the same.
    for exclude_none in (False, True):
        assert read(spec_view.WhatsAppBotSpec, model.model_dump(
            mode="json", by_alias=True, exclude_none=exclude_none)) == view


def test_every_model_field_is_in_the_view() -> None:
    models = {m.__name__: m for m in spec_codegen.models(WhatsAppBotSpec)}
    assert sorted(models) == sorted(cls.__name__ for cls in spec_view.SHAPES)
    for cls, fields in spec_view.SHAPES.items():
        model = models[cls.__name__]
        assert [(a, alias) for a, alias, _, _ in fields] == [
            (name, info.alias or name) for name, info in model.model_fields.items()]


@pytest.mark.parametrize(("raw", "message"), [
    ([], "spec: expected a mapping, got a list"),
    ({}, "spec.serverName: required"),
    ({"serverName": "a", "setings": {}}, "spec.setings: unknown field"),
    ({"serverName": 7}, "spec.serverName: expected a string, got an integer"),
    ({"serverName": "a", "suspend": "false"}, "spec.suspend: expected a boolean, got a string"),
    ({"serverName": "a", "rateLimit": {"perChatPerMinute": True}},
     "spec.rateLimit.perChatPerMinute: expected an integer, got a boolean"),
    ({"serverName": "a", "rateLimit": {"perChatPerMinute": "20"}},
     "spec.rateLimit.perChatPerMinute: expected an integer, got a string"),
    ({"serverName": "a", "media": {"download": "all"}},
     "spec.media.download: expected one of none, metadata, full, got 'all'"),
    ({"serverName": "a", "commands": {"custom": [{"response": "x"}]}},
     "spec.commands.custom[0].name: required"),
    ({"serverName": "a", "commands": {"plugins": "notes"}},
     "spec.commands.plugins: expected a list, got a string"),
    ({"serverName": "a", "features": {"x": "on"}},
     "spec.features.x: expected a boolean, got a string"),
    ({"serverName": "a", "features": {1: True}}, "spec.features: the key 1 is not a string"),
    ({"serverName": "a", "webhook": {"url": "https://x"}}, "spec.webhook.secretRef: required"),
    # bounds, lengths and patterns: what the model's fields say
    ({"serverName": "a", "rateLimit": {"perChatPerMinute": 0}},
     "spec.rateLimit.perChatPerMinute: must be at least 1, got 0"),
    ({"serverName": "a", "settings": {"maxMessageLength": 70000}},
     "spec.settings.maxMessageLength: must be at most 65536, got 70000"),
    ({"serverName": "a", "commands": {"prefix": ""}},
     "spec.commands.prefix: must have at least 1 character, got 0"),
    ({"serverName": "a", "commands": {"prefix": "a b"}},
     "spec.commands.prefix: 'a b' does not match ^[^\\t\\n\\v\\f\\r \\U00000085\\U000000a0"
     "\\U00001680\\U00002000-\\U0000200a\\U00002028\\U00002029\\U0000202f\\U0000205f"
     "\\U00003000]+$"),
    ({"serverName": "Bad_Name"}, "spec.serverName: 'Bad_Name' does not match "
     "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
    ({"serverName": "a", "commands": {"plugins": ["bad plugin"]}},
     "spec.commands.plugins[0]: 'bad plugin' does not match ^[A-Za-z0-9_.-]{1,128}$"),
    ({"serverName": "a", "webhook": {"url": "https://x", "secretRef": {"name": "s"},
                                     "events": ["message"] * 16}},
     "spec.webhook.events: must have at most 15 items, got 16"),
])
def test_a_spec_it_cannot_read_names_the_field(raw: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        read(spec_view.WhatsAppBotSpec, raw)
    assert str(err.value) == message
    with pytest.raises(ValueError):  # the model refuses each of them too
        WhatsAppBotSpec.model_validate(raw)


def test_the_view_does_not_import_pydantic() -> None:
    code = ("import sys, wabot.spec_view, wabot.specread; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'pydantic_core', 'wabot.spec')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
