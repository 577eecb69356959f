"""The worker's environment contract (docs/design.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from botworker.config import ConfigError, SpecSource, load_config, redact_dsn

BASE = {"BOT_ID": "shop", "SERVER_NAME": "acme"}


def test_defaults_and_the_seed_layout() -> None:
    cfg = load_config({**BASE, "POD_NAME": "wabot-shop"})
    assert cfg.session_dir == Path("data/auth/acme/bot_shop")
    assert cfg.session_path.name == "session.sqlite3"
    assert cfg.http_port == 8080 and cfg.spec_source == SpecSource(kind="defaults")
    assert cfg.lease_name == "wabot-shop" and cfg.bot_name == "shop"
    assert cfg.effective_database_url.startswith("sqlite:///")
    assert cfg.effective_database_url.endswith("/data/auth/acme/bot_shop/wabot.sqlite3")


def test_operator_environment() -> None:
    cfg = load_config({
        **BASE, "WABOT_BOT_NAME": "shop-cr", "WABOT_NAMESPACE": "tenants",
        "WABOT_LEASE_NAME": "wabot-shop-cr", "AUTH_DIR": "/var/lib/wabot",
        "DATABASE_URL": "postgresql://u:p@db/wabot", "HTTP_PORT": "9090",
        "WABOT_SPEC_SOURCE": "kubernetes",
    })
    assert cfg.session_dir == Path("/var/lib/wabot/auth/acme/bot_shop")
    assert cfg.namespace == "tenants" and cfg.on_kubernetes
    assert cfg.effective_database_url == "postgresql://u:p@db/wabot"
    assert "p@" not in repr(cfg)  # the DSN is a secret in reprs and logs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVER_NAME": "acme"}, "BOT_ID is required in worker mode"),
        ({"BOT_ID": "  ", "SERVER_NAME": "acme"}, "BOT_ID is required in worker mode"),
        ({"BOT_ID": "shop"}, "SERVER_NAME is required in worker mode"),
        ({**BASE, "SERVER_NAME": "../x"}, "SERVER_NAME='../x' is not valid"),
        ({**BASE, "HTTP_PORT": "99999"}, "HTTP_PORT: "),
        ({**BASE, "WABOT_SPEC_SOURCE": "file:"}, "WABOT_SPEC_SOURCE must be"),
    ],
)
def test_errors_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_kubernetes_source_needs_a_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    import botworker.config as c

    monkeypatch.setattr(c, "_SA_NAMESPACE", Path("/nonexistent"))
    with pytest.raises(ConfigError, match="WABOT_NAMESPACE is required"):
        load_config({**BASE, "WABOT_SPEC_SOURCE": "kubernetes"})


def test_redact_dsn() -> None:
    assert redact_dsn("postgresql://app:s3cr%40t@db:5432/wabot?sslmode=require") == (
        "postgresql://app:***@db:5432/wabot?sslmode=require"
    )
    assert redact_dsn("sqlite:////var/lib/x.db") == "sqlite:////var/lib/x.db"
