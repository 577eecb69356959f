"""The worker's environment contract (wabot.workerenv) is the one list every tier renders:
the operator's pod, a fleet worker process and a Compose service set the same variables."""

from __future__ import annotations

from pathlib import Path

from fleet.botsfile import parse_documents
from fleet.compose import compose_env
from fleet.workers import WorkerSettings, worker_process
from wabot import naming
from wabot.spec import ADMIN_ENV_NAMES, RESERVED_ENV_NAMES, WhatsAppBotSpec
from wabot.workerenv import (
    DATABASE_URL_ORIGIN,
    HTTP_HOST,
    PROXY_ORIGIN,
    TUNING_NAMES,
    WEBHOOK_ORIGIN,
    FieldRef,
    SecretRef,
    WorkerEnv,
)

BOT = """
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: sales}
spec:
  serverName: acme
  botId: s1
  database: {secretRef: {name: acme-db, key: dsn}}
  webhook: {url: "https://hooks.example.com/in", secretRef: {name: hook, key: key}}
  proxy: {secretRef: {name: px, key: url}}
"""


def full_contract(spec: WhatsAppBotSpec, name: str = "sales") -> WorkerEnv:
    """As the operator's docstring in wabot.workerenv says to build it."""
    assert spec.database is not None and spec.webhook is not None and spec.proxy is not None
    assert spec.database.secret_ref is not None
    return WorkerEnv(
        bot_name=name, bot_id=spec.effective_bot_id(name), server_name=spec.server_name,
        namespace=FieldRef("metadata.namespace"), pod_name=FieldRef("metadata.name"),
        lease_name=naming.child_name(name), auth_dir="/var/lib/wabot",
        database=SecretRef.of(spec.database.secret_ref, DATABASE_URL_ORIGIN),
        http_port=8080, spec_source="kubernetes",
        webhook_secret=SecretRef.of(spec.webhook.secret_ref, WEBHOOK_ORIGIN),
        proxy_url=SecretRef.of(spec.proxy.secret_ref, PROXY_ORIGIN),
        admin_env=(("WABOT_WEBHOOK_ALLOW_HOSTS", "hooks.internal"),),
        api_token=SecretRef(naming.api_secret_name(name), naming.API_TOKEN_KEY,
                            optional=True))


def test_every_contract_name_is_reserved_from_spec_env() -> None:
    """A bot's own spec.env can shadow none of them (the CRD and the model refuse them)."""
    (bot,) = parse_documents(BOT)
    names = [n for n, _ in full_contract(bot.spec).items()]
    assert len(names) == len(set(names))
    # The runtime tuning (GOMAXPROCS, MALLOC_ARENA_MAX) is a default a bot may change.
    assert set(names) - {HTTP_HOST} - TUNING_NAMES <= set(RESERVED_ENV_NAMES) | set(
        ADMIN_ENV_NAMES)
    assert not TUNING_NAMES & set(RESERVED_ENV_NAMES)


def test_fleet_and_compose_set_the_same_contract(tmp_path: Path) -> None:
    (bot,) = parse_documents(BOT)
    secrets = tmp_path / "secrets"
    for name, key, value in (("acme-db", "dsn", "postgresql://t@db/app"),
                             ("hook", "key", "k" * 32), ("px", "url", "http://p:3128")):
        (secrets / name).mkdir(parents=True)
        (secrets / name / key).write_text(value + "\n")
    process = worker_process(bot, WorkerSettings(auth_dir=tmp_path / "a", run_dir=tmp_path / "r",
                                                 secrets_dir=secrets))
    service = compose_env(bot)
    contract = {n for n, _ in full_contract(bot.spec).items()}
    kube_only = {"WABOT_NAMESPACE", "POD_NAME", "WABOT_LEASE_NAME", "WABOT_API_TOKEN",
                 "WABOT_WEBHOOK_ALLOW_HOSTS"}
    # The fleet's port is a free one the supervisor sets at each start (port_env), and its
    # webhook key goes as a file (never in the supervisor's process table).
    assert process.port_env == "HTTP_PORT"
    assert set(process.env) >= contract - kube_only - {"HTTP_PORT", "WABOT_WEBHOOK_SECRET"}
    assert "WABOT_WEBHOOK_SECRET" not in process.env
    assert Path(process.env["WABOT_WEBHOOK_SECRET_FILE"]).read_text().strip() == "k" * 32
    assert process.env["DATABASE_URL"] == "postgresql://t@db/app"
    assert process.env["WABOT_PROXY_URL"] == "http://p:3128"
    assert set(service) == contract - kube_only
    assert service["WABOT_PROXY_URL"].startswith("${WABOT_PROXY_PX_URL:?")
