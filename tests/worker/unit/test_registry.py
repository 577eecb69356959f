"""A bot's own registry: built-ins, custom replies, plugins, and nothing of other bots."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest

from botworker.core.registry import Command, CommandRegistry, RegistryError, build_registry
from wabot.spec import WhatsAppBotSpec


def spec(**kw: object) -> WhatsAppBotSpec:
    return WhatsAppBotSpec.model_validate({"serverName": "t", "botId": "b", **kw})


def info() -> dict[str, str]:
    return {}


@pytest.fixture
def plugin_module(monkeypatch: pytest.MonkeyPatch) -> str:
    mod = types.ModuleType("fake_wabot_plugin")

    def register(reg: CommandRegistry) -> None:
        reg.command("weather", lambda ctx: "sunny", description="forecast", aliases=["w"])

    def register_clash(reg: CommandRegistry) -> None:
        reg.command("weather2", lambda ctx: "x")
        reg.command("ping", lambda ctx: "hijacked")

    mod.register = register  # type: ignore[attr-defined]
    mod.register_clash = register_clash  # type: ignore[attr-defined]
    mod.not_callable = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_wabot_plugin", mod)
    return "fake_wabot_plugin"


def eps(module: str) -> list[EntryPoint]:
    return [
        EntryPoint("weather", f"{module}:register", "wabot.plugins"),
        EntryPoint("clash", f"{module}:register_clash", "wabot.plugins"),
        EntryPoint("junk", f"{module}:not_callable", "wabot.plugins"),
    ]


def test_builtins_by_default() -> None:
    r = build_registry(spec(), "b", info).registry
    assert [c.name for c in r.commands()] == ["help", "info", "ping"]
    assert r.lookup("MENU") is r.lookup("help")


def test_menu_alone() -> None:
    r = build_registry(spec(commands={"builtins": ["menu"]}), "b", info).registry
    assert [c.name for c in r.commands()] == ["menu"]


def test_custom_commands_may_replace_a_builtin() -> None:
    r = build_registry(
        spec(commands={"custom": [{"name": "ping", "response": "custom pong"},
                                  {"name": "hours", "aliases": ["open"], "response": "9-5"}]}),
        "b", info,
    ).registry
    ping = r.lookup("ping")
    assert ping is not None and ping.source == "custom"
    hours = r.lookup("open")
    assert hours is not None and hours.name == "hours"


def test_plugins_load_only_when_listed(plugin_module: str) -> None:
    listed = build_registry(spec(commands={"plugins": ["weather"]}), "b", info,
                            eps(plugin_module))
    assert listed.plugins == ["weather"] and "w" in listed.registry
    weather = listed.registry.lookup("weather")
    assert weather is not None and weather.source == "plugin:weather"
    other = build_registry(spec(), "b", info, eps(plugin_module))
    assert "weather" not in other.registry and other.plugins == []


def test_a_plugin_that_clashes_is_left_out_entirely(plugin_module: str) -> None:
    res = build_registry(spec(commands={"plugins": ["clash", "junk", "absent"]}), "b", info,
                         eps(plugin_module))
    assert "weather2" not in res.registry  # all or nothing per plugin
    ping = res.registry.lookup("ping")
    assert ping is not None and ping.source == "builtin"
    assert len(res.errors) == 3
    assert any("not installed" in e for e in res.errors)


def test_registry_rejects_bad_and_duplicate_names() -> None:
    r = CommandRegistry("b", "t")
    r.add(Command("a", lambda ctx: None, aliases=("x",)))
    with pytest.raises(RegistryError):
        r.add(Command("x", lambda ctx: None))
    with pytest.raises(RegistryError):
        r.add(Command("has space", lambda ctx: None))
    with pytest.raises(RegistryError):
        r.add(Command("dup", lambda ctx: None, aliases=("dup",)))


def test_frozen_after_build() -> None:
    r = build_registry(spec(), "b", info).registry
    with pytest.raises(RegistryError):
        r.command("late", lambda ctx: None)
