"""Operator configuration from the environment: wrong settings stop the start with a message
naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from wabot_operator.config import ConfigError, OperatorConfig
from wabot_operator.main import load_config

from wabot.spec import SecretKeyRef

TEMPLATES = str(Path(__file__).resolve().parents[3] / "operator" / "bot-templates")


def test_defaults_watch_everything_with_peering() -> None:
    c = OperatorConfig.from_env({})
    assert c.clusterwide and c.namespaces == ()
    assert c.templates_dir == Path(TEMPLATES)  # found beside operator/ in a checkout
    assert not c.standalone and c.peering_name == "wabot"
    assert (c.metrics_port, c.health_port) == (9090, 8080)
    assert c.worker_image.startswith("wabot-worker:")
    assert c.database_secret is None


def test_priorities_differ_between_replicas_by_default() -> None:
    """kopf freezes every replica that shares the top priority."""
    assert len({OperatorConfig.from_env({}).priority for _ in range(20)}) > 1


@pytest.mark.parametrize(("raw", "namespaces"), [
    ("*", ()), ("all", ()), ("bots", ("bots",)), ("a, b,,c", ("a", "b", "c")),
    ("team-*", ("team-*",)),
])
def test_namespace_forms(raw: str, namespaces: tuple[str, ...]) -> None:
    c = OperatorConfig.from_env({"WABOT_OPERATOR_NAMESPACES": raw})
    assert c.namespaces == namespaces
    assert c.clusterwide == (namespaces == ())


def test_every_setting_is_read() -> None:
    c = OperatorConfig.from_env({
        "WABOT_OPERATOR_NAMESPACES": "bots",
        "WABOT_OPERATOR_WORKER_IMAGE": "reg/w:1",
        "WABOT_OPERATOR_DATABASE_SECRET": "dsn:url",
        "WABOT_OPERATOR_TEMPLATES_DIR": TEMPLATES,
        "WABOT_OPERATOR_METRICS_PORT": "0",
        "WABOT_OPERATOR_HEALTH_PORT": "18080",
        "WABOT_OPERATOR_PEERING_NAME": "blue",
        "WABOT_OPERATOR_STANDALONE": "true",
        "WABOT_OPERATOR_PRIORITY": "100",
        "WABOT_OPERATOR_RECONCILE_INTERVAL": "2.5",
        "WABOT_OPERATOR_RESYNC_INTERVAL": "60",
        "WABOT_OPERATOR_LOG_FORMAT": "JSON",
        "WABOT_OPERATOR_LOG_LEVEL": "debug",
    })
    assert c.worker_image == "reg/w:1"
    assert c.database_secret == SecretKeyRef(name="dsn", key="url")
    assert (c.metrics_port, c.health_port, c.priority) == (0, 18080, 100)
    assert c.standalone and c.peering_name == "blue"
    assert (c.reconcile_interval, c.resync_interval) == (2.5, 60)
    assert (c.log_format, c.log_level) == ("json", "DEBUG")
    assert OperatorConfig.from_env({"WABOT_OPERATOR_DATABASE_SECRET": "dsn"}).database_secret == (
        SecretKeyRef(name="dsn", key="value"))


@pytest.mark.parametrize(("var", "value"), [
    ("METRICS_PORT", "70000"),
    ("HEALTH_PORT", "http"),
    ("STANDALONE", "maybe"),
    ("TEMPLATES_DIR", "/nonexistent"),
    ("DATABASE_SECRET", "Not_A_Name"),
    ("LOG_FORMAT", "xml"),
    ("RECONCILE_INTERVAL", "0"),
])
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"WABOT_OPERATOR_{var}"):
        OperatorConfig.from_env({f"WABOT_OPERATOR_{var}": value})


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WABOT_OPERATOR_NAMESPACES", "a,b")
    monkeypatch.setenv("WABOT_OPERATOR_STANDALONE", "false")
    c, _ = load_config(["-n", "x", "--namespace", "y", "--standalone", "--priority", "5"])
    assert c.namespaces == ("x", "y") and c.standalone and c.priority == 5
    c, _ = load_config(["-A"])
    assert c.clusterwide
