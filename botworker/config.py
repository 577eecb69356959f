"""The worker's configuration, read once from the environment the operator renders.

Everything a pod needs to know about itself arrives as environment variables (see the table in
docs/design.md). They are validated here, before anything heavy is imported, so a pod with a
missing or malformed variable fails in milliseconds with one readable line instead of a
traceback from deep inside neonize or the Kubernetes client.

Checked with the standard library and wabot/envcheck.py (the checks the other roles' pydantic
settings share), not pydantic: a worker never loads it (~14 MiB of every idle bot,
bench/PROFILE-density.md, "pydantic out of the worker").
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wabot.egress import EgressPolicy
from wabot.envcheck import LOG_LEVELS, check_dsn, listen_host, normalize_level
from wabot.envcheck import ConfigError as ConfigError  # shared by every role (wabot_cli)
from wabot.naming import auth_subdir, child_name
from wabot.redact import KNOWN, Kind
from wabot.redact import redact_dsn as redact_dsn  # the callers' name for it
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
_SUBDOMAIN_RE = re.compile(DNS_SUBDOMAIN_PATTERN)


class SecretStr:
    """A secret setting: its value only through get_secret_value(), masked in reprs and logs
    (the part of pydantic's SecretStr the worker used)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SpecSource:
    """Where the bot's WhatsAppBotSpec comes from: defaults, a YAML file, or the API server."""

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


@dataclass(frozen=True)
class WorkerConfig:
    """The checked environment of one worker process (one bot); built by load_config."""

    bot_id: str
    server_name: str
    bot_name: str
    pod_name: str
    lease_name: str
    namespace: str | None = None
    auth_dir: Path = Path("./data")
    database_url: SecretStr | None = None
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    spec_source: SpecSource = SpecSource(kind="defaults")
    log_level: str = "INFO"
    lease_duration_s: float = 15.0
    shutdown_timeout_s: float = 25.0
    # Integrations (README: Receiving webhooks, Sending a message; spec.proxy). Secrets all:
    # never logged, never in status.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = 10.0
    webhook_queue_max: int = 10_000
    webhook_max_age_s: float = 86_400.0
    webhook_backoff_cap_s: float = 300.0
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
    lease_name = env.get("WABOT_LEASE_NAME", "").strip() or child_name(bot_name)
    if len(lease_name) > 253 or not _SUBDOMAIN_RE.match(lease_name):
        raise ConfigError(f"WABOT_LEASE_NAME={lease_name!r} is not valid: use lowercase "
                          "letters, digits, '-' and '.' (a DNS subdomain, at most 253)")
    raw: dict[str, object] = {
        "bot_id": bot_id,
        "server_name": server_name,
        "bot_name": bot_name,
        "namespace": None if namespace is None else _valid_name("WABOT_NAMESPACE", namespace),
        "pod_name": env.get("POD_NAME", "").strip() or socket.gethostname(),
        "lease_name": lease_name,
        "auth_dir": Path(env.get("AUTH_DIR", "").strip() or "./data"),
        "spec_source": source,
        "log_level": _log_level(env.get("LOG_LEVEL", "").strip() or "INFO"),
    }
    if env.get("DATABASE_URL", "").strip():
        dsn = env["DATABASE_URL"].strip()
        raw["database_url"] = SecretStr(dsn) if _checked("DATABASE_URL", dsn, check_dsn) else None
    if env.get("HTTP_HOST", "").strip():
        raw["http_host"] = _checked("HTTP_HOST", env["HTTP_HOST"].strip(), listen_host)
    raw.update(_integration_settings(env))
    for key, (field, parse) in _NUMBERS.items():
        if env.get(key, "").strip():
            raw[field] = _checked(key, env[key].strip(), parse)
    return WorkerConfig(**raw)  # type: ignore[arg-type]  # each value checked above


def _checked(key: str, value: str, check: Callable[[str], object]) -> object:
    """`check(value)`, its ValueError as `KEY: what is wrong` (never quoting the value: a DSN
    or a proxy URL may hold a password)."""
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _log_level(value: str) -> str:
    level = normalize_level(value)
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL: one of {', '.join(LOG_LEVELS)} (or WARN, FATAL), "
                          "in any case")
    return str(level)


def _number(kind: type[int] | type[float], low: float, high: float | None,
            low_open: bool = False) -> Callable[[str], object]:
    """A parser of one numeric variable: an integer or a finite number within the bounds."""
    def parse(value: str) -> object:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"not {'an integer' if kind is int else 'a number'}") from None
        too_low = number <= low if low_open else number < low
        if not math.isfinite(number) or too_low or (high is not None and number > high):
            side = f"greater than {low:g}" if low_open else f"at least {low:g}"
            raise ValueError(f"must be {side}" + (f" and at most {high:g}" if high else ""))
        return number
    return parse


# The numeric variables: their fields and bounds.
_NUMBERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "HTTP_PORT": ("http_port", _number(int, 0, 65535)),
    "WABOT_LEASE_DURATION_SECONDS": ("lease_duration_s", _number(float, 3.0, 3600.0)),
    "WABOT_SHUTDOWN_TIMEOUT_SECONDS": ("shutdown_timeout_s", _number(float, 0, 3600.0, True)),
    "WABOT_WEBHOOK_TIMEOUT_SECONDS": ("webhook_timeout_s", _number(float, 0, 300.0, True)),
    "WABOT_WEBHOOK_QUEUE_MAX": ("webhook_queue_max", _number(int, 1, 1_000_000)),
    "WABOT_WEBHOOK_MAX_AGE_SECONDS": ("webhook_max_age_s", _number(float, 0, None, True)),
    "WABOT_WEBHOOK_BACKOFF_CAP_SECONDS": ("webhook_backoff_cap_s",
                                          _number(float, 0.1, 86_400.0)),
}


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
        out["webhook_secret"] = SecretStr(secret)
    token = env.get("WABOT_API_TOKEN", "").strip()
    if token:
        if len(token) < MIN_API_TOKEN_LENGTH:
            raise ConfigError(
                f"WABOT_API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters"
            )
        out["api_token"] = SecretStr(token)
    proxy = env.get("WABOT_PROXY_URL", "").strip()
    if proxy:
        out["proxy_url"] = SecretStr(proxy)
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


_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _namespace_from_service_account() -> str | None:
    try:
        return _SA_NAMESPACE.read_text().strip() or None
    except OSError:
        return None
