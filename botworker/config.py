"""The worker's configuration, read once from the environment the operator renders.

Everything a pod needs to know about itself arrives as environment variables (see the table in
docs/design.md). They are validated here, before anything heavy is imported, so a pod with a
missing or malformed variable fails in milliseconds with one readable line instead of a
traceback from deep inside neonize or the Kubernetes client.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from wabot.egress import EgressPolicy
from wabot.naming import auth_subdir, child_name
from wabot.redact import KNOWN, Kind
from wabot.redact import redact_dsn as redact_dsn  # the callers' name for it
from wabot.settings import ConfigError as ConfigError  # shared by every role (wabot_cli)
from wabot.settings import Dsn, ListenHost, LogLevel, first_problem
from wabot.spec_view import DNS_SUBDOMAIN_PATTERN, NAME_PATTERN
from wabot.workerenv import ALLOW_CIDRS_ENV, ALLOW_HOSTS_ENV, DENY_CIDRS_ENV

SESSION_FILE = "session.sqlite3"
DEFAULT_DB_FILE = "wabot.sqlite3"
SPOOL_FILE = "audit-spool.jsonl"
# The worker's own small durable state beside the session (webhook outbox, idempotency keys of
# the send API, greeted chats): on the auth volume, so it survives restarts and moves with it.
STATE_FILE = "worker-state.sqlite3"
MIN_API_TOKEN_LENGTH = 16
_NAME_RE = re.compile(NAME_PATTERN)


class SpecSource(BaseModel):
    """Where the bot's WhatsAppBotSpec comes from: defaults, a YAML file, or the API server."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["defaults", "file", "kubernetes"]
    path: Path | None = None

    @classmethod
    def parse(cls, raw: str | None) -> SpecSource:
        if not raw:
            return cls(kind="defaults")
        if raw == "kubernetes":
            return cls(kind="kubernetes")
        if raw.startswith("file:") and len(raw) > len("file:"):
            return cls(kind="file", path=Path(raw[len("file:") :]))
        raise ConfigError(
            f"WABOT_SPEC_SOURCE must be 'kubernetes' or 'file:<path>', not {raw!r}"
        )


class WorkerConfig(BaseModel):
    """The validated environment of one worker process (one bot)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    bot_id: str = Field(pattern=NAME_PATTERN, max_length=63)
    server_name: str = Field(pattern=NAME_PATTERN, max_length=63)
    bot_name: str = Field(pattern=NAME_PATTERN, max_length=63)
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63)
    pod_name: str
    lease_name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    auth_dir: Path = Path("./data")
    database_url: Dsn | None = None
    http_host: ListenHost = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    spec_source: SpecSource = SpecSource(kind="defaults")
    log_level: LogLevel = "INFO"
    lease_duration_s: float = Field(default=15.0, ge=3.0, le=3600.0)
    shutdown_timeout_s: float = Field(default=25.0, gt=0.0, le=3600.0)
    # Integrations (README: Receiving webhooks, Sending a message; spec.proxy). Secrets all:
    # never logged, never in status.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    webhook_queue_max: int = Field(default=10_000, ge=1, le=1_000_000)
    webhook_max_age_s: float = Field(default=86_400.0, gt=0.0)
    webhook_backoff_cap_s: float = Field(default=300.0, ge=0.1, le=86_400.0)
    api_token: SecretStr | None = None
    proxy_url: SecretStr | None = None
    # The admin's exceptions to the webhook egress policy (egress.py), comma lists as given.
    webhook_allow_cidrs: str = ""
    webhook_allow_hosts: str = ""
    webhook_deny_cidrs: str = ""

    @property
    def session_dir(self) -> Path:
        """The seed's layout: auth/{serverName}/bot_{botId}/ under the auth root (the PVC)."""
        return self.auth_dir / auth_subdir(self.server_name, self.bot_id)

    @property
    def session_path(self) -> Path:
        return self.session_dir / SESSION_FILE

    @property
    def spool_path(self) -> Path:
        return self.session_dir / SPOOL_FILE

    @property
    def state_path(self) -> Path:
        return self.session_dir / STATE_FILE

    @property
    def effective_database_url(self) -> str:
        """The DSN to use: DATABASE_URL, else a SQLite file beside the session (on the PVC)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.session_dir / DEFAULT_DB_FILE).resolve()}"

    @property
    def on_kubernetes(self) -> bool:
        return self.spec_source.kind == "kubernetes"

    @property
    def webhook_egress(self) -> EgressPolicy:
        return EgressPolicy.parse(self.webhook_allow_cidrs, self.webhook_allow_hosts,
                                  self.webhook_deny_cidrs)


def register_secrets(cfg: WorkerConfig) -> None:
    """Hand the process's secrets to the log formatter's last-resort scrubbing (wabot.redact):
    whatever shape a log line has, none of them is printed."""
    held: tuple[tuple[SecretStr | None, Kind], ...] = (
        (cfg.database_url, "dsn"), (cfg.proxy_url, "url"),
        (cfg.webhook_secret, "opaque"), (cfg.api_token, "opaque"))
    for value, kind in held:
        if value is not None:
            KNOWN.add(value.get_secret_value(), kind)


def _required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "").strip()
    if not value:
        raise ConfigError(f"{key} is required in worker mode")
    return value


def _valid_name(key: str, value: str) -> str:
    if len(value) > 63 or not _NAME_RE.match(value):
        raise ConfigError(
            f"{key}={value!r} is not valid: use lowercase letters, digits and '-' "
            "(a DNS label, at most 63 characters)"
        )
    return value


def load_config(env: Mapping[str, str] | None = None) -> WorkerConfig:
    """Build the config from `env` (the process environment by default).

    Raises ConfigError with a one-line message; never a ValidationError traceback.
    """
    env = os.environ if env is None else env
    bot_id = _valid_name("BOT_ID", _required(env, "BOT_ID"))
    server_name = _valid_name("SERVER_NAME", _required(env, "SERVER_NAME"))
    bot_name = _valid_name("WABOT_BOT_NAME", env.get("WABOT_BOT_NAME", "").strip() or bot_id)
    source = SpecSource.parse(env.get("WABOT_SPEC_SOURCE", "").strip() or None)
    namespace = env.get("WABOT_NAMESPACE", "").strip() or None
    if source.kind == "kubernetes" and namespace is None:
        namespace = _namespace_from_service_account()
        if namespace is None:
            raise ConfigError("WABOT_NAMESPACE is required when WABOT_SPEC_SOURCE=kubernetes")
    raw: dict[str, object] = {
        "bot_id": bot_id,
        "server_name": server_name,
        "bot_name": bot_name,
        "namespace": namespace,
        "pod_name": env.get("POD_NAME", "").strip() or socket.gethostname(),
        "lease_name": env.get("WABOT_LEASE_NAME", "").strip() or child_name(bot_name),
        "auth_dir": Path(env.get("AUTH_DIR", "").strip() or "./data"),
        "spec_source": source,
        "log_level": env.get("LOG_LEVEL", "").strip() or "INFO",
    }
    if env.get("DATABASE_URL", "").strip():
        raw["database_url"] = env["DATABASE_URL"].strip()
    raw.update(_integration_settings(env))
    for key, field in (
        ("HTTP_PORT", "http_port"),
        ("WABOT_LEASE_DURATION_SECONDS", "lease_duration_s"),
        ("WABOT_SHUTDOWN_TIMEOUT_SECONDS", "shutdown_timeout_s"),
        ("WABOT_WEBHOOK_TIMEOUT_SECONDS", "webhook_timeout_s"),
        ("WABOT_WEBHOOK_QUEUE_MAX", "webhook_queue_max"),
        ("WABOT_WEBHOOK_MAX_AGE_SECONDS", "webhook_max_age_s"),
        ("WABOT_WEBHOOK_BACKOFF_CAP_SECONDS", "webhook_backoff_cap_s"),
    ):
        if env.get(key, "").strip():
            raw[field] = env[key].strip()
    if env.get("HTTP_HOST", "").strip():
        raw["http_host"] = env["HTTP_HOST"].strip()
    try:
        return WorkerConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(first_problem(exc, _ENV_OF_FIELD)) from None


def _integration_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The webhook signing key (WABOT_WEBHOOK_SECRET, or the file WABOT_WEBHOOK_SECRET_FILE
    names, which is how the tiers without Kubernetes hand it over), the send API's token and
    the proxy URL. The proxy URL is checked later by the worker, which reports a bad one in
    its status instead of exiting (a pod in CrashLoopBackOff would say nothing useful)."""
    out: dict[str, object] = {}
    secret = env.get("WABOT_WEBHOOK_SECRET", "").strip()
    secret_file = env.get("WABOT_WEBHOOK_SECRET_FILE", "").strip()
    if not secret and secret_file:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"WABOT_WEBHOOK_SECRET_FILE: cannot read {secret_file}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"WABOT_WEBHOOK_SECRET_FILE: {secret_file} is not UTF-8 text"
            ) from None
        if not secret:  # a key that was meant to be there: deliveries would go unsigned
            raise ConfigError(f"WABOT_WEBHOOK_SECRET_FILE: {secret_file} is empty; it must "
                              "hold the webhook signing key")
    if secret:
        out["webhook_secret"] = secret
    token = env.get("WABOT_API_TOKEN", "").strip()
    if token:
        if len(token) < MIN_API_TOKEN_LENGTH:
            raise ConfigError(
                f"WABOT_API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters"
            )
        out["api_token"] = token
    proxy = env.get("WABOT_PROXY_URL", "").strip()
    if proxy:
        out["proxy_url"] = proxy
    lists = {name: env.get(name, "").strip()
             for name in (ALLOW_CIDRS_ENV, ALLOW_HOSTS_ENV, DENY_CIDRS_ENV)}
    try:
        EgressPolicy.parse(*lists.values())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out["webhook_allow_cidrs"] = lists[ALLOW_CIDRS_ENV]
    out["webhook_allow_hosts"] = lists[ALLOW_HOSTS_ENV]
    out["webhook_deny_cidrs"] = lists[DENY_CIDRS_ENV]
    return out


_ENV_OF_FIELD = {
    "webhook_timeout_s": "WABOT_WEBHOOK_TIMEOUT_SECONDS",
    "webhook_queue_max": "WABOT_WEBHOOK_QUEUE_MAX",
    "webhook_max_age_s": "WABOT_WEBHOOK_MAX_AGE_SECONDS",
    "webhook_backoff_cap_s": "WABOT_WEBHOOK_BACKOFF_CAP_SECONDS",
    "http_port": "HTTP_PORT",
    "lease_duration_s": "WABOT_LEASE_DURATION_SECONDS",
    "shutdown_timeout_s": "WABOT_SHUTDOWN_TIMEOUT_SECONDS",
    "database_url": "DATABASE_URL",
    "pod_name": "POD_NAME",
    "bot_id": "BOT_ID",
    "server_name": "SERVER_NAME",
    "bot_name": "WABOT_BOT_NAME",
    "namespace": "WABOT_NAMESPACE",
    "lease_name": "WABOT_LEASE_NAME",
    "auth_dir": "AUTH_DIR",
    "http_host": "HTTP_HOST",
    "log_level": "LOG_LEVEL",
    "spec_source": "WABOT_SPEC_SOURCE",
    "webhook_secret": "WABOT_WEBHOOK_SECRET",
    "api_token": "WABOT_API_TOKEN",
    "proxy_url": "WABOT_PROXY_URL",
}

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _namespace_from_service_account() -> str | None:
    try:
        return _SA_NAMESPACE.read_text().strip() or None
    except OSError:
        return None
