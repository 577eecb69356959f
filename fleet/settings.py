"""The settings of the fleet's two long-running roles, the monolith and the controller, read
from their environment (and flags) and validated before any bot starts: a bad one is one line
naming the variable, exit code 2 (wabot.settings)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from wabot.settings import Dsn, ListenHost, LogLevel, check_dsn, first_problem

from .botsfile import BotDefinition, load_bots_file
from .workers import WORKER_ARGV, ConfigError

DEFAULT_HTTP_PORT = 5000  # the seed's port
LOOPBACK = "127.0.0.1"
MIN_TOKEN_LENGTH = 16


class MonolithSettings(BaseModel):
    """The monolith's environment (and flags), validated before any bot starts."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    bots_file: Path | None = None
    bots_dsn: Dsn | None = None
    http_host: ListenHost = LOOPBACK
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=0, le=65535)
    token: SecretStr | None = None
    auth_dir: Path = Path("./data")
    run_dir: Path | None = None
    database_url: Dsn | None = None
    secrets_dir: Path | None = None
    worker_argv: tuple[str, ...] = Field(default=WORKER_ARGV, min_length=1)
    federate_metrics: bool = True
    stop_grace_s: float = Field(default=30.0, gt=0, le=3600)
    log_level: LogLevel = "INFO"
    group: str | None = None
    stopped: tuple[str, ...] = ()
    # Where bots_file came from, so a problem in the file names the setting (or the flag).
    bots_file_setting: Literal["WABOT_BOTS_FILE", "--bots"] = "WABOT_BOTS_FILE"

    @field_validator("bots_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                with value.open("rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value

    @field_validator("auth_dir", "run_dir")
    @classmethod
    def _directory_or_absent(cls, value: Path | None) -> Path | None:
        # Created when missing; a file in the way would fail every bot, one by one.
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @field_validator("secrets_dir")
    @classmethod
    def _directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory (it holds <secret>/<key> files)")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> MonolithSettings:
        def get(key: str) -> str | None:
            value = env.get(key, "").strip()
            return value or None

        raw: dict[str, Any] = {
            "bots_file": get("WABOT_BOTS_FILE"),
            "bots_dsn": get("WABOT_BOTS_DSN"),
            "http_host": get("WABOT_HTTP_HOST"),
            "http_port": get("WABOT_HTTP_PORT"),
            "token": get("WABOT_CONTROLLER_TOKEN"),
            "auth_dir": get("AUTH_DIR"),
            "run_dir": get("WABOT_RUN_DIR"),
            "database_url": get("DATABASE_URL"),
            "secrets_dir": get("WABOT_SECRETS_DIR"),
            "worker_argv": _command("WABOT_WORKER_COMMAND", get("WABOT_WORKER_COMMAND")),
            "federate_metrics": get("WABOT_FEDERATE_METRICS"),
            "stop_grace_s": get("WABOT_STOP_GRACE_SECONDS"),
            "log_level": get("LOG_LEVEL"),
        }
        given = {k: v for k, v in overrides.items() if v is not None}
        raw.update(given)
        if "bots_file" in given:
            raw["bots_file_setting"] = "--bots"
        if raw["http_host"] is None:
            raw["http_host"] = default_http_host(env)
        if (migrate_url := get("WABOT_MIGRATE_URL")) is not None:
            # Used by the migrate step after the bots start: a malformed one is a setting.
            try:
                check_dsn(migrate_url)
            except ValueError as exc:
                raise ConfigError(f"WABOT_MIGRATE_URL: {exc}") from None
        try:
            return cls.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValidationError as exc:
            names = {**SETTING_NAMES, **{k: FLAG_NAMES[k] for k in given if k in FLAG_NAMES}}
            raise ConfigError(first_problem(exc, names)) from None


# The variable (or, when given, the flag) each setting comes from, for error messages.
SETTING_NAMES = {
    "bots_file": "WABOT_BOTS_FILE", "bots_dsn": "WABOT_BOTS_DSN",
    "http_host": "WABOT_HTTP_HOST", "http_port": "WABOT_HTTP_PORT",
    "token": "WABOT_CONTROLLER_TOKEN", "auth_dir": "AUTH_DIR", "run_dir": "WABOT_RUN_DIR",
    "database_url": "DATABASE_URL", "secrets_dir": "WABOT_SECRETS_DIR",
    "worker_argv": "WABOT_WORKER_COMMAND", "federate_metrics": "WABOT_FEDERATE_METRICS",
    "stop_grace_s": "WABOT_STOP_GRACE_SECONDS", "log_level": "LOG_LEVEL",
}
FLAG_NAMES = {"bots_file": "--bots", "http_host": "--host", "http_port": "--port",
              "group": "--group", "stopped": "--stopped-file"}


def _command(name: str, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:  # an unbalanced quote
        raise ConfigError(f"{name}: not a command line ({exc})") from None


def default_http_host(env: Mapping[str, str]) -> str:
    """Loopback outside Kubernetes: the API names every bot and tenant and, with a token,
    controls them, and a laptop or VM is often on a network it does not own. Listening
    elsewhere is a deliberate setting (WABOT_HTTP_HOST=0.0.0.0, as the generated Compose file
    does). In a pod (KUBERNETES_SERVICE_HOST set) only the pod's address reaches the kubelet's
    probes and a Service, and the pod network is the cluster's to police."""
    return "0.0.0.0" if env.get("KUBERNETES_SERVICE_HOST", "").strip() else LOOPBACK


def load_bots(settings: MonolithSettings) -> list[BotDefinition]:
    """The bots file wins over the database; one of them is required."""
    if settings.bots_file is not None:
        return load_bots_file(settings.bots_file,
                              f"{settings.bots_file_setting} {settings.bots_file}")
    if settings.bots_dsn is not None:
        from .botsdb import engine_for, load_bots_from_db

        engine = engine_for(settings.bots_dsn.get_secret_value())
        try:
            return load_bots_from_db(engine, "WABOT_BOTS_DSN")
        finally:
            engine.dispose()
    raise ConfigError("no bots: set WABOT_BOTS_FILE (or --bots PATH) or WABOT_BOTS_DSN")


class ControllerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    base: MonolithSettings
    token: SecretStr
    worker_groups: int = Field(default=2, ge=0, le=64)
    rollout_timeout_s: float = Field(default=300.0, gt=0)
    bot_url_template: str = Field(default="http://bot-{name}:8080", pattern=r"^https?://")

    @field_validator("bot_url_template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            value.format(name="b", bot_id="b", server_name="t")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder {exc} (use {{name}}, {{bot_id}}, "
                             "{server_name})") from None
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> ControllerSettings:
        base = MonolithSettings.from_env(env, **overrides)
        if base.token is None:
            raise ConfigError("WABOT_CONTROLLER_TOKEN is required: the controller's API starts, "
                              "stops and restarts bots (use 16+ random characters, e.g. "
                              "`openssl rand -hex 24`)")
        check_token_length(base.token)
        raw: dict[str, Any] = {"base": base, "token": base.token}
        for key, field in (("WABOT_WORKER_GROUPS", "worker_groups"),
                           ("WABOT_ROLLOUT_TIMEOUT_SECONDS", "rollout_timeout_s"),
                           ("WABOT_BOT_URL_TEMPLATE", "bot_url_template")):
            if env.get(key, "").strip():
                raw[field] = env[key].strip()
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(first_problem(exc, {
                "worker_groups": "WABOT_WORKER_GROUPS",
                "rollout_timeout_s": "WABOT_ROLLOUT_TIMEOUT_SECONDS",
                "bot_url_template": "WABOT_BOT_URL_TEMPLATE"})) from None


def check_token_length(token: SecretStr | None) -> None:
    """A short token is guessable by anyone who reaches the API."""
    if token is not None and len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"WABOT_CONTROLLER_TOKEN must be at least {MIN_TOKEN_LENGTH} "
                          "characters")
