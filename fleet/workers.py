"""A bot definition → the worker process that runs it, with the worker's env contract
(docs/design.md) filled in exactly as the operator fills it in for a pod.

The worker is started unchanged (`python -m wabot_cli worker`): the per-bot code path is the same
in every tier. What differs is only where things live: the auth root is shared by all bots of
a monolith (each bot's session is `auth/{serverName}/bot_{botId}/` under it, the worker picks
that subdirectory itself), the spec comes from a file the supervisor writes, and the HTTP port
is a free loopback port instead of 8080 in a pod of its own.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from wabot.naming import auth_subdir
from wabot.settings import ConfigError as ConfigError  # shared by every role (wabot_cli)
from wabot.spec import ADMIN_ENV_NAMES, RESERVED_ENV_NAMES
from wabot.workerenv import (
    API_TOKEN,
    DATABASE_URL_ORIGIN,
    HTTP_PORT,
    PROXY_ORIGIN,
    WEBHOOK_ORIGIN,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_FILE,
    SecretRef,
    WorkerEnv,
)

from .botsfile import BotDefinition
from .supervisor import ProcessSpec

WORKER_ARGV: tuple[str, ...] = (sys.executable, "-m", "wabot_cli", "worker")

# Settings of the supervising tier that a bot must not inherit: its own role, its credentials
# (the controller token, the bots database) and its listening address.
FLEET_ENV_NAMES: tuple[str, ...] = (
    "WABOT_BOTS_FILE",
    "WABOT_BOTS_DSN",
    "WABOT_MIGRATE_URL",  # the owner's DSN: the supervisor's migrate step only, never a bot
    "WABOT_CONTROLLER_TOKEN",
    "WABOT_HTTP_HOST",
    "WABOT_HTTP_PORT",
    "WABOT_WORKER_GROUPS",
    "WABOT_RUN_DIR",
    "WABOT_SECRETS_DIR",
    "WABOT_WORKER_COMMAND",
    "WABOT_WEBHOOK_SECRET_FILE",
    "WABOT_BOT_URL_TEMPLATE",
    "WABOT_FEDERATE_METRICS",
    "DEPLOYMENT_ROLE",
    "HTTP_HOST",
)


class WorkerSettings(BaseModel):
    """What every bot process of one supervisor shares."""

    model_config = ConfigDict(frozen=True)

    auth_dir: Path
    run_dir: Path
    database_url: str | None = None
    secrets_dir: Path | None = None
    worker_argv: tuple[str, ...] = WORKER_ARGV
    base_env: dict[str, str] = Field(default_factory=dict)


def default_run_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="wabot-fleet-"))


def inherited_env(env: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment minus what belongs to the contract or to the tier (the
    admin's settings for every bot, ADMIN_ENV_NAMES, are passed down)."""
    drop = (set(RESERVED_ENV_NAMES) - set(ADMIN_ENV_NAMES)) | set(FLEET_ENV_NAMES)
    out = {k: v for k, v in env.items() if k not in drop}
    out["PYTHONPATH"] = python_path(env.get("PYTHONPATH"))
    return out


def python_path(existing: str | None) -> str:
    """Children import wabot and fleet the way this process did, installed or not."""
    roots: list[str] = []
    for mod in ("wabot", "fleet"):
        module = sys.modules.get(mod)
        if module is not None and module.__file__:
            root = str(Path(module.__file__).resolve().parent.parent)
            if root not in roots:
                roots.append(root)
    if existing:
        roots += [p for p in existing.split(os.pathsep) if p and p not in roots]
    return os.pathsep.join(roots)


def lock_path(auth_dir: Path, bot: BotDefinition) -> Path:
    """Beside the session directory, not in it: migration archives only the session."""
    session = auth_dir / auth_subdir(bot.server_name, bot.bot_id)
    return session.parent / f".{session.name}.lock"


def worker_env(bot: BotDefinition, settings: WorkerSettings, spec_file: Path) -> WorkerEnv:
    """The bot's side of the contract; its Secrets stay references until `resolve_env`."""
    spec = bot.spec
    db_ref = spec.database.secret_ref if spec.database else None
    return WorkerEnv(
        bot_name=bot.name, bot_id=bot.bot_id, server_name=bot.server_name,
        auth_dir=str(settings.auth_dir.resolve()), http_host="127.0.0.1",
        spec_source=f"file:{spec_file}",
        database=(SecretRef.of(db_ref, DATABASE_URL_ORIGIN) if db_ref is not None
                  else settings.database_url or None),
        webhook_secret=(SecretRef.of(spec.webhook.secret_ref, WEBHOOK_ORIGIN)
                        if spec.webhook is not None else None),
        proxy_url=(SecretRef.of(spec.proxy.secret_ref, PROXY_ORIGIN)
                   if spec.proxy is not None else None),
    )


def secret_file(bot: BotDefinition, settings: WorkerSettings, ref: SecretRef) -> Path:
    """spec's secretRefs name Secrets; without Kubernetes each is a file laid out as a mounted
    Secret would be: $WABOT_SECRETS_DIR/<name>/<key>."""
    if settings.secrets_dir is None:
        raise ConfigError(
            f"bot {bot.name}: {ref.origin} {ref.name}/{ref.key} needs WABOT_SECRETS_DIR "
            "(a directory with <secret>/<key> files)"
        )
    return settings.secrets_dir / ref.name / ref.key


def resolve_env(bot: BotDefinition, settings: WorkerSettings, contract: WorkerEnv
                ) -> dict[str, str]:
    """The contract as a process environment. The webhook's signing key goes as a file the
    worker reads (WABOT_WEBHOOK_SECRET_FILE: the key never sits in the supervisor's process
    table); the DSN and the proxy URL are read here (the worker reports a bad proxy itself)."""
    env: dict[str, str] = {}
    for name, value in contract.items():
        if isinstance(value, str):
            env[name] = value
        elif isinstance(value, SecretRef):
            path = secret_file(bot, settings, value)
            if name == WEBHOOK_SECRET:
                env[WEBHOOK_SECRET_FILE] = str(path.resolve())
                continue
            try:
                env[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"bot {bot.name}: cannot read {value.what} secret {path}: "
                                  f"{exc.strerror}") from None
        else:  # a FieldRef: the downward API has no counterpart outside a pod
            raise ConfigError(f"bot {bot.name}: {name} needs Kubernetes")
    return env


def write_spec_file(bot: BotDefinition, run_dir: Path) -> Path:
    """The bot's spec for `WABOT_SPEC_SOURCE=file:`; replaced atomically so a worker that
    watches it never reads half a file."""
    import yaml

    specs = run_dir / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    path = specs / f"{bot.name}.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(bot.spec_document(), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path.resolve()


def worker_process(bot: BotDefinition, settings: WorkerSettings,
                   api_token: str | None = None) -> ProcessSpec:
    """`api_token` turns on the worker's API (WABOT_API_TOKEN) for the console's session view
    and actions: the supervising process's own token for this bot, on the loopback port."""
    spec_file = write_spec_file(bot, settings.run_dir)
    env = dict(settings.base_env)
    env.update({e.name: e.value for e in bot.spec.env})
    contract = worker_env(bot, settings, spec_file)
    env.update(resolve_env(bot, settings, contract))
    if api_token is not None:
        env[API_TOKEN] = api_token
    return ProcessSpec(
        name=bot.name,
        argv=settings.worker_argv,
        env=env,
        # bot = botId, as on every series and log line of the worker itself.
        labels={"bot": bot.bot_id, "server_name": bot.server_name},
        lock_path=lock_path(Path(contract.auth_dir), bot),
        port_env=HTTP_PORT,
        health_path="/livez",
        ready_path="/readyz",
        revision=restart_revision(bot),
    )


# What the worker applies from a changed spec file without a restart (botworker's
# Worker.apply_spec); a change anywhere else (pairing, database, webhook, env...) restarts it.
HOT_FIELDS = frozenset({"commands", "settings", "features", "rateLimit"})


def restart_revision(bot: BotDefinition) -> str:
    """A digest of the spec minus what the worker hot-applies: the supervisor restarts the bot
    when this changes, and otherwise leaves the running worker to pick up the new file."""
    import hashlib
    import json

    cold = {k: v for k, v in bot.spec_document().items() if k not in HOT_FIELDS}
    return hashlib.sha256(json.dumps(cold, sort_keys=True).encode()).hexdigest()[:16]
