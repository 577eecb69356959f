"""`python -m fleet compose`: the seed's Docker Compose option (Tier 3 without Kubernetes),
generated from the same bots file.

One service per bot, each the unchanged worker with the env contract of docs/design.md, its
own named auth volume (the seed's `auth/{serverName}/bot_{botId}/` lives on it, as on a bot's
PVC), the spec's resource requests/limits, and the pod's hardening (read-only root, tmpfs /tmp,
uid 10001, every capability dropped, no privilege escalation). Next to them: PostgreSQL and the
controller in observe-only mode (`WABOT_WORKER_GROUPS=0`), which lists, probes and federates
the bot containers but never starts bots itself: Compose owns the containers, and a second
copy of a bot would log its session out.

The bots' specs are written beside the compose file (`wabot-specs/NAME.yaml`) and mounted as
Compose configs: a file and not inline content, because Compose interpolates `$` in inline
content and a custom reply may well contain one. Values the generator puts into `environment`
escape `$` as `$$` for the same reason; the only interpolations are the deliberate
`${POSTGRES_PASSWORD}` and `${WABOT_CONTROLLER_TOKEN}` (put them in `.env`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from wabot import workerenv
from wabot.naming import auth_subdir
from wabot.spec import DEFAULT_RESOURCES
from wabot.workerenv import SecretRef, WorkerEnv

from .botsfile import BotDefinition, BotsFileError, dump_bots, load_bots_file
from .compose_file import (
    USER,
    ComposeFile,
    ConfigFile,
    ConfigRef,
    Dependency,
    Deploy,
    DeployResources,
    Healthcheck,
    Mount,
    QuantityError,
    Resources,
    Service,
    check_compose,
    cpus,
    memory,
)

# Imported from here by the tests and older callers.
__all__ = ["USER", "ComposeFile", "QuantityError", "check_compose", "cpus", "memory",
           "render_compose", "run", "write_compose"]

DEFAULT_IMAGE = "wabot-worker:latest"
POSTGRES_IMAGE = "postgres:16-bookworm"
AUTH_DIR = "/var/lib/wabot"
SPEC_PATH = "/etc/wabot/spec.yaml"
BOTS_PATH = "/etc/wabot/bots.yaml"
WORKER_PORT = 8080
CONTROLLER_PORT = 5000
SPECS_DIR = "wabot-specs"
# The bundled PostgreSQL's superuser: the owner side only (the db-setup service migrates and
# provisions with it); bots connect as their tenant's role, wabot_<serverName>.
OWNER_DSN = "postgresql://wabot:${POSTGRES_PASSWORD}@postgres:5432/wabot"
DB_SETUP = "db-setup"
# Fields of a WhatsAppBot that only mean something to a Kubernetes scheduler.
KUBE_ONLY = ("node_selector", "tolerations", "affinity", "priority_class_name")


def escape(value: str) -> str:
    """A literal value for Compose's `environment` (no interpolation)."""
    return value.replace("$", "$$")


def service_name(bot: BotDefinition) -> str:
    return f"bot-{bot.name}"


def volume_name(bot: BotDefinition) -> str:
    return f"bot-{bot.name}-auth"


def _env_var(*parts: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", "_".join(parts).upper())


# --- rendering ------------------------------------------------------------------------------


def _healthcheck(port: int) -> Healthcheck:
    probe = (f"import urllib.request; urllib.request.urlopen("
             f"'http://127.0.0.1:{port}/livez', timeout=3)")
    return Healthcheck(test=["CMD", "python3", "-c", probe])


# How a Secret-backed variable reaches a bot's container: from the environment of
# `docker compose` (e.g. .env), never written into the generated file. Per variable: the
# prefix of the variable that carries it, and what the error names when it is unset.
SECRET_VARS = {
    workerenv.DATABASE_URL: ("WABOT_DB", "the DSN of Secret"),
    workerenv.WEBHOOK_SECRET: ("WABOT_HOOK", "Secret"),
    workerenv.PROXY_URL: ("WABOT_PROXY", "Secret"),
}


def worker_env(bot: BotDefinition) -> WorkerEnv:
    """The bot's side of the contract; without a secretRef its DSN is its tenant's role on
    the bundled PostgreSQL."""
    spec = bot.spec
    db_ref = spec.database.secret_ref if spec.database else None
    return WorkerEnv(
        bot_name=bot.name, bot_id=bot.bot_id, server_name=bot.server_name,
        auth_dir=AUTH_DIR, http_port=WORKER_PORT, spec_source=f"file:{SPEC_PATH}",
        database=(SecretRef.of(db_ref, workerenv.DATABASE_URL_ORIGIN) if db_ref is not None
                  else tenant_dsn(bot.server_name)),
        webhook_secret=(SecretRef.of(spec.webhook.secret_ref, workerenv.WEBHOOK_ORIGIN)
                        if spec.webhook is not None else None),
        proxy_url=(SecretRef.of(spec.proxy.secret_ref, workerenv.PROXY_ORIGIN)
                   if spec.proxy is not None else None),
    )


def compose_env(bot: BotDefinition) -> dict[str, str]:
    """The service's `environment`: the bot's own env (escaped: no interpolation), then the
    contract, whose Secrets are required interpolations."""
    env = {e.name: escape(e.value) for e in bot.spec.env}
    for name, value in worker_env(bot).items():
        if isinstance(value, SecretRef) and name in SECRET_VARS:
            prefix, what = SECRET_VARS[name]
            var = _env_var(prefix, value.name, value.key)
            env[name] = f"${{{var}:?set {var} ({what} {value.name}/{value.key})}}"
        elif isinstance(value, str):
            env[name] = value
        else:  # the contract gives Compose no downward API and no send-API Secret
            raise ValueError(f"{name}: no Compose counterpart for {value!r}")
    return env


def bot_service(bot: BotDefinition, image: str, warnings: list[str]) -> Service:
    spec = bot.spec
    env = compose_env(bot)
    db_ref = spec.database.secret_ref if spec.database else None
    resources = spec.resources.over(DEFAULT_RESOURCES)
    limits, requests = resources.limits, resources.requests
    lim = Resources(cpus=cpus(limits.cpu) if limits.cpu else None,
                    memory=memory(limits.memory) if limits.memory else None)
    res = Resources(cpus=cpus(requests.cpu) if requests.cpu else None,
                    memory=memory(requests.memory) if requests.memory else None)
    for field in KUBE_ONLY:
        if field in spec.model_fields_set:
            alias = type(spec).model_fields[field].alias or field
            warnings.append(f"{bot.name}: spec.{alias} has no meaning in Docker Compose; ignored")
    return Service(
        image=spec.image or image,
        environment=env,
        volumes=[Mount(source=volume_name(bot), target=AUTH_DIR)],
        configs=[ConfigRef(source=f"{service_name(bot)}-spec", target=SPEC_PATH)],
        tmpfs=["/tmp:size=64m"],
        mem_limit=lim.memory, mem_reservation=res.memory, cpus=lim.cpus,
        deploy=Deploy(resources=DeployResources(
            limits=lim if (lim.cpus or lim.memory) else None,
            reservations=res if (res.cpus or res.memory) else None)),
        healthcheck=_healthcheck(WORKER_PORT),
        depends_on={"postgres": Dependency(condition="service_healthy"),
                    **({DB_SETUP: Dependency(condition="service_completed_successfully")}
                       if db_ref is None else {})},
        stop_grace_period="30s",
        # A suspended bot keeps its volume but is not started by a plain `docker compose up`.
        profiles=["suspended"] if spec.suspend else None,
        labels={"io.wabot.bot": bot.name, "io.wabot.server-name": bot.server_name,
                "io.wabot.session": str(auth_subdir(bot.server_name, bot.bot_id))},
    )


def tenant_dsn(server_name: str) -> str:
    """A bot's DSN on the bundled PostgreSQL: its tenant's role (made by db-setup), whose
    password comes from the environment of `docker compose` (.env), never from this file."""
    from botworker.data.migrate import password_env
    from botworker.data.tenancy import default_role_name

    var = password_env(server_name)
    return (f"postgresql://{default_role_name(server_name)}:${{{var}:?set {var} (password of "
            f"tenant {server_name}'s database role)}}@postgres:5432/wabot")


def db_setup_service(bots: Sequence[BotDefinition], image: str) -> Service:
    """One shot before the bots: the migrations and a role per tenant, as the owner."""
    from botworker.data.migrate import password_env

    tenants = sorted({b.server_name for b in bots})
    env = {"WABOT_MIGRATE_URL": OWNER_DSN}
    env.update({password_env(t): f"${{{password_env(t)}:?set {password_env(t)}}}"
                for t in tenants})
    return Service(image=image, command=["db", "setup", *[a for t in tenants
                                                          for a in ("--tenant", t)]],
                   environment=env, tmpfs=["/tmp:size=16m"], restart="no",
                   depends_on={"postgres": Dependency(condition="service_healthy")})


def render_compose(bots: Sequence[BotDefinition], image: str = DEFAULT_IMAGE,
                   postgres_image: str = POSTGRES_IMAGE, specs_dir: str = SPECS_DIR
                   ) -> tuple[ComposeFile, list[str]]:
    warnings: list[str] = []
    services: dict[str, Service] = {
        "postgres": Service(
            image=postgres_image,
            environment={"POSTGRES_USER": "wabot", "POSTGRES_DB": "wabot",
                         "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"},
            volumes=[Mount(source="postgres-data", target="/var/lib/postgresql/data")],
            # The postgres image starts as root and drops to its own user.
            user=None, read_only=None, cap_drop=None, security_opt=None,
            healthcheck=Healthcheck(test=["CMD", "pg_isready", "-U", "wabot", "-d", "wabot"],
                                    start_period="10s"),
        ),
        "controller": Service(
            image=image,
            command=["controller"],
            environment={
                "ROLE": "controller",
                "WABOT_WORKER_GROUPS": "0",
                "WABOT_BOTS_FILE": BOTS_PATH,
                "WABOT_BOT_URL_TEMPLATE": f"http://bot-{{name}}:{WORKER_PORT}",
                # Loopback is the default outside Kubernetes; the published port needs this.
                "WABOT_HTTP_HOST": "0.0.0.0",
                "WABOT_HTTP_PORT": str(CONTROLLER_PORT),
                "WABOT_CONTROLLER_TOKEN":
                    "${WABOT_CONTROLLER_TOKEN:?set WABOT_CONTROLLER_TOKEN (16+ characters)}",
            },
            ports=[f"{CONTROLLER_PORT}:{CONTROLLER_PORT}"],
            configs=[ConfigRef(source="wabot-bots", target=BOTS_PATH)],
            tmpfs=["/tmp:size=16m"],
            healthcheck=_healthcheck(CONTROLLER_PORT),
            depends_on={"postgres": Dependency(condition="service_healthy")},
        ),
    }
    if any(b.spec.database is None for b in bots):
        services[DB_SETUP] = db_setup_service(
            [b for b in bots if b.spec.database is None], image)
    volumes: dict[str, dict[str, Any]] = {"postgres-data": {}}
    configs = {"wabot-bots": ConfigFile(file=f"./{specs_dir}/bots.yaml")}
    for bot in bots:
        services[service_name(bot)] = bot_service(bot, image, warnings)
        volumes[volume_name(bot)] = {"labels": {"io.wabot.bot": bot.name,
                                                "io.wabot.server-name": bot.server_name}}
        configs[f"{service_name(bot)}-spec"] = ConfigFile(file=f"./{specs_dir}/{bot.name}.yaml")
    return ComposeFile(services=services, volumes=volumes, configs=configs), warnings


def write_compose(bots: Sequence[BotDefinition], out: Path, image: str = DEFAULT_IMAGE,
                  postgres_image: str = POSTGRES_IMAGE) -> list[str]:
    """Writes the compose file and, beside it, the spec files it mounts; returns warnings."""
    compose, warnings = render_compose(bots, image, postgres_image)
    specs = out.parent / SPECS_DIR
    specs.mkdir(parents=True, exist_ok=True)
    (specs / "bots.yaml").write_text(dump_bots(bots), encoding="utf-8")
    for bot in bots:
        (specs / f"{bot.name}.yaml").write_text(
            yaml.safe_dump(bot.spec_document(), sort_keys=False), encoding="utf-8")
    text = ("# Generated by `python -m fleet compose`; regenerate rather than edit.\n"
            "# Needs POSTGRES_PASSWORD and WABOT_CONTROLLER_TOKEN (e.g. in .env).\n"
            + compose.to_yaml())
    problems = check_compose(yaml.safe_load(text), out.parent)
    if problems:  # a generator bug, never the user's: refuse to write a broken file
        raise RuntimeError("generated compose file is inconsistent: " + "; ".join(problems))
    out.write_text(text, encoding="utf-8")
    return warnings


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fleet compose", description=(
        "Generate docker-compose.yml (one service per bot, its own auth volume and limits, "
        "plus PostgreSQL and an observing controller) from a bots file."))
    p.add_argument("--bots", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, default=Path("docker-compose.yml"))
    p.add_argument("--image", default=DEFAULT_IMAGE, help=f"worker image (default {DEFAULT_IMAGE}"
                   "; spec.image overrides it per bot)")
    p.add_argument("--postgres-image", default=POSTGRES_IMAGE)
    args = p.parse_args(list(argv or []))
    try:
        bots = load_bots_file(args.bots)
        warnings = write_compose(bots, args.output, args.image, args.postgres_image)
    except (BotsFileError, QuantityError) as exc:
        print(f"compose: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"compose: warning: {w}", file=sys.stderr)
    print(f"compose: wrote {args.output} ({len(bots)} bots) and {args.output.parent / SPECS_DIR}/")
    return 0
