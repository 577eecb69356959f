"""The gateway's settings, from WABOT_GATEWAY_* variables, validated before it starts.

- `WABOT_GATEWAY_PORT` (8080), `WABOT_GATEWAY_HOST` (0.0.0.0).
- `WABOT_GATEWAY_KEYS_NAMESPACE`: where the API-key Secrets are (default: the gateway's own
  namespace, from its ServiceAccount). The gateway lists Secrets there (RBAC cannot narrow a
  list to a label), so it should hold the keys and nothing else: the chart sets a namespace of
  their own (`<release namespace>-api-keys`), never the release namespace, where the database
  owner's DSN is.
- `WABOT_GATEWAY_NAMESPACES`: comma list of the namespaces whose bots it serves (empty: any
  namespace its RBAC lets it read); a bot elsewhere is answered 404.
- `WABOT_GATEWAY_WORKER_URL_TEMPLATE`: how to reach a bot's worker, with `{podIP}`, `{port}`,
  `{namespace}`, `{bot}` (default `http://{podIP}:{port}`). Tests point it at a worker running
  on 127.0.0.1, since the simulated nodes of the test cluster run no containers.
- `WABOT_GATEWAY_WORKER_PORT` (8080): the worker's HTTP_PORT.
- `WABOT_GATEWAY_KEYS_TTL_SECONDS` (10): how long the API-key list is cached (an unknown key
  refreshes it at most every 2 s, so a new key works at once).
- `WABOT_GATEWAY_TIMEOUT_SECONDS` (30): the time a worker has to answer.
- `WABOT_GATEWAY_LOG_LEVEL` (INFO).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wabot.settings import ConfigError as ConfigError  # shared by every role (wabot_cli)
from wabot.settings import ListenHost, LogLevel, first_problem
from wabot.spec import NAME_PATTERN

PREFIX = "WABOT_GATEWAY_"
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    host: ListenHost = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    keys_namespace: str = Field(pattern=NAME_PATTERN, max_length=63)
    namespaces: tuple[Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)], ...] = ()
    worker_url_template: str = Field(default="http://{podIP}:{port}", pattern=r"^https?://")
    worker_port: int = Field(default=8080, ge=1, le=65535)
    keys_ttl_s: float = Field(default=10.0, gt=0, le=3600)
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    log_level: LogLevel = "INFO"

    def worker_url(self, *, pod_ip: str, namespace: str, bot: str) -> str:
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return self.worker_url_template.format(podIP=host, port=self.worker_port,
                                               namespace=namespace, bot=bot)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name, "").strip()
            return value or None

        raw: dict[str, object] = {}
        for name, field in (("HOST", "host"), ("PORT", "port"),
                            ("WORKER_URL_TEMPLATE", "worker_url_template"),
                            ("WORKER_PORT", "worker_port"), ("KEYS_TTL_SECONDS", "keys_ttl_s"),
                            ("TIMEOUT_SECONDS", "timeout_s")):
            if (value := get(name)) is not None:
                raw[field] = value
        if (level := get("LOG_LEVEL")) is not None:
            raw["log_level"] = level
        keys_ns = get("KEYS_NAMESPACE")
        if keys_ns is None:
            try:
                keys_ns = _SA_NAMESPACE.read_text().strip() or None
            except OSError:
                keys_ns = None
        if keys_ns is None:
            raise ConfigError(f"{PREFIX}KEYS_NAMESPACE is required outside a pod")
        raw["keys_namespace"] = keys_ns
        if (namespaces := get("NAMESPACES")) is not None:
            raw["namespaces"] = tuple(n.strip() for n in namespaces.split(",") if n.strip())
        try:
            cfg = cls.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(first_problem(
                e, {field: PREFIX + name for field, name in _ENV.items()}, PREFIX)) from None
        try:
            cfg.worker_url(pod_ip="10.0.0.1", namespace="ns", bot="b")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"{PREFIX}WORKER_URL_TEMPLATE: unknown placeholder {e}") from e
        return cfg


_ENV = {"host": "HOST", "port": "PORT", "keys_namespace": "KEYS_NAMESPACE",
        "namespaces": "NAMESPACES", "worker_url_template": "WORKER_URL_TEMPLATE",
        "worker_port": "WORKER_PORT", "keys_ttl_s": "KEYS_TTL_SECONDS",
        "timeout_s": "TIMEOUT_SECONDS", "log_level": "LOG_LEVEL"}
