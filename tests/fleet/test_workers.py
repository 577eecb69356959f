"""What each bot process is given: the worker's env contract, its own spec file, and nothing
of the supervising tier's secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleet.botsfile import parse_documents
from fleet.http import ErrorBody, Request, Route, dispatch, json_response
from fleet.workers import (
    ConfigError,
    WorkerSettings,
    inherited_env,
    restart_revision,
    worker_process,
)

BOT = """
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: sales}
spec:
  serverName: acme
  botId: s1
  env: [{name: GREETING, value: hi}]
  commands: {prefix: "!"}
"""


def settings(tmp_path: Path, **kw: object) -> WorkerSettings:
    env = inherited_env({"PATH": "/bin", "WABOT_CONTROLLER_TOKEN": "secret-secret-secret",
                         "WABOT_BOTS_DSN": "postgresql://admin:pw@db/bots", "BOT_ID": "x",
                         "WABOT_MIGRATE_URL": "postgresql://owner:pw@db/app",
                         "LOG_LEVEL": "DEBUG"})
    return WorkerSettings(auth_dir=tmp_path / "data", run_dir=tmp_path / "run", base_env=env,
                          **kw)  # type: ignore[arg-type]


def test_env_contract_and_no_leaked_secrets(tmp_path: Path) -> None:
    (bot,) = parse_documents(BOT)
    spec = worker_process(bot, settings(tmp_path, database_url="postgresql://t@db/app"))
    env = spec.env
    assert env["ROLE"] == "worker" and env["BOT_ID"] == "s1" and env["SERVER_NAME"] == "acme"
    assert env["WABOT_BOT_NAME"] == "sales" and env["HTTP_HOST"] == "127.0.0.1"
    assert env["AUTH_DIR"] == str((tmp_path / "data").resolve())
    assert env["DATABASE_URL"] == "postgresql://t@db/app"
    assert env["GREETING"] == "hi" and env["LOG_LEVEL"] == "DEBUG"
    assert "WABOT_CONTROLLER_TOKEN" not in env and "WABOT_BOTS_DSN" not in env
    assert "WABOT_MIGRATE_URL" not in env  # the owner's DSN stays with the migrate step
    assert spec.port_env == "HTTP_PORT"  # a free port is chosen at each start
    assert spec.labels == {"bot": "s1", "server_name": "acme"}
    # the spec file is the bot's spec, as the worker reads it
    path = Path(env["WABOT_SPEC_SOURCE"].removeprefix("file:"))
    assert yaml.safe_load(path.read_text())["botId"] == "s1"
    # the session lock sits beside the session dir
    assert spec.lock_path == (tmp_path / "data").resolve() / "auth/acme/.bot_s1.lock"


def test_hot_changes_do_not_restart_but_others_do() -> None:
    (bot,) = parse_documents(BOT)
    (hot,) = parse_documents(BOT.replace('prefix: "!"', 'prefix: "#"'))
    (cold,) = parse_documents(BOT.replace("value: hi", "value: hello"))
    assert restart_revision(hot) == restart_revision(bot)
    assert restart_revision(cold) != restart_revision(bot)


def test_database_secret_refs_resolve_from_the_secrets_dir(tmp_path: Path) -> None:
    text = BOT.replace("  botId: s1\n", "  botId: s1\n  database: {secretRef: {name: db, "
                       "key: dsn}}\n")
    (bot,) = parse_documents(text)
    with pytest.raises(ConfigError, match="WABOT_SECRETS_DIR"):
        worker_process(bot, settings(tmp_path))
    secrets = tmp_path / "secrets"
    (secrets / "db").mkdir(parents=True)
    (secrets / "db" / "dsn").write_text("postgresql://tenant@db/acme\n")
    spec = worker_process(bot, settings(tmp_path, secrets_dir=secrets))
    assert spec.env["DATABASE_URL"] == "postgresql://tenant@db/acme"


def _req(method: str, path: str, auth: str | None = None) -> Request:
    headers = {"authorization": auth} if auth else {}
    return Request(method, path, {}, headers, b"")


def test_http_dispatch_auth_and_errors() -> None:
    ok = lambda r: json_response(200, ErrorBody(error=r.params.get("name", "")))  # noqa: E731
    routes = [Route("GET", r"/open", ok), Route("POST", r"/bots/(?P<name>[a-z]+)/stop", ok,
                                                auth=True)]
    token = "t" * 20
    assert dispatch(routes, token, _req("GET", "/open")).status == 200
    assert dispatch(routes, token, _req("POST", "/bots/a/stop")).status == 401
    assert dispatch(routes, token, _req("POST", "/bots/a/stop", "Bearer " + "u" * 20)
                    ).status == 401
    assert dispatch(routes, token, _req("POST", "/bots/a/stop", "Basic " + token)).status == 401
    assert dispatch(routes, token, _req("POST", "/bots/a/stop", "Bearer " + token)).status == 200
    assert dispatch(routes, None, _req("POST", "/bots/a/stop", "Bearer x")).status == 403
    assert dispatch(routes, token, _req("GET", "/bots/a/stop", "Bearer " + token)).status == 405
    assert dispatch(routes, token, _req("GET", "/nope")).status == 404


def test_webhook_key_and_proxy_url_come_from_the_secrets_dir(tmp_path: Path) -> None:
    text = BOT.replace("  botId: s1\n", "  botId: s1\n  webhook: {url: 'https://h.example/x', "
                       "secretRef: {name: hook}}\n  proxy: {secretRef: {name: px, key: url}}\n")
    (bot,) = parse_documents(text)
    with pytest.raises(ConfigError, match="WABOT_SECRETS_DIR"):
        worker_process(bot, settings(tmp_path))
    secrets = tmp_path / "secrets"
    (secrets / "hook").mkdir(parents=True)
    (secrets / "hook" / "value").write_text("whsec-from-file\n")
    (secrets / "px").mkdir()
    (secrets / "px" / "url").write_text("socks5://u:p@proxy.example:1080\n")
    spec = worker_process(bot, settings(tmp_path, secrets_dir=secrets))
    assert spec.env["WABOT_WEBHOOK_SECRET_FILE"] == str((secrets / "hook" / "value").resolve())
    assert "WABOT_WEBHOOK_SECRET" not in spec.env  # the key itself stays in its file
    assert spec.env["WABOT_PROXY_URL"] == "socks5://u:p@proxy.example:1080"
    # What the worker makes of it.
    from botworker.config import load_config

    cfg = load_config({**spec.env, "BOT_ID": "s1", "SERVER_NAME": "acme"})
    assert cfg.webhook_secret is not None
    assert cfg.webhook_secret.get_secret_value() == "whsec-from-file"
