"""The worker's environment contract (docs/design.md, "Pod environment"), written once.

Every tier starts the same worker (`python -m wabot worker`) and tells it who it is through
the same variables; only where the values come from differs. A Kubernetes pod gets Secrets as
`secretKeyRef` and its namespace and name from the downward API; a fleet worker process gets
the Secret's file under `$WABOT_SECRETS_DIR`; a Compose service gets `${VAR}` from the
environment of `docker compose`. So `WorkerEnv` holds the worker's identity and settings,
with every Secret-backed value as a `SecretRef` and every downward-API value as a `FieldRef`,
and each tier turns those references into its own mechanism:

* the operator's pod builder (`wabot_operator.specs.pod.pod_env`)::

      contract = WorkerEnv(
          bot_name=bot.name, bot_id=spec.effective_bot_id(bot.name),
          server_name=spec.server_name,
          namespace=FieldRef("metadata.namespace"), pod_name=FieldRef("metadata.name"),
          lease_name=naming.child_name(bot.name), auth_dir=auth_dir,
          database=SecretRef.of(dsn_ref, DATABASE_URL_ORIGIN) if dsn_ref else None,
          http_port=http_port, spec_source="kubernetes",
          webhook_secret=SecretRef.of(spec.webhook.secret_ref, WEBHOOK_ORIGIN) ...,
          proxy_url=SecretRef.of(spec.proxy.secret_ref, PROXY_ORIGIN) ...,
          admin_env=tuple(defaults.worker_env),
          api_token=SecretRef(naming.api_secret_name(bot.name), naming.API_TOKEN_KEY,
                              optional=True, origin="the send API's Secret"))
      env = contract.kubernetes()

  `kubernetes()` makes `{"name", "value"}` of a str, `valueFrom.secretKeyRef` (with
  `optional` when set) of a SecretRef and `valueFrom.fieldRef` (apiVersion v1) of a FieldRef.
  `items()` yields in the order the operator has always rendered, so the pod-spec hash (which
  covers the env list's order) does not change and running pods are not rolled
  (tests/fleet/test_workerenv.py checks this against the operator's pod_env).
* `fleet.workers.worker_process`: secret refs read from `$WABOT_SECRETS_DIR/<name>/<key>`.
* `fleet.compose.bot_service`: secret refs as required `${VAR:?...}` interpolations.

This module imports nothing of wabot's, so the spec model and every tier can import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

ROLE = "ROLE"
BOT_ID = "BOT_ID"
SERVER_NAME = "SERVER_NAME"
BOT_NAME = "WABOT_BOT_NAME"
NAMESPACE = "WABOT_NAMESPACE"
POD_NAME = "POD_NAME"
LEASE_NAME = "WABOT_LEASE_NAME"
AUTH_DIR = "AUTH_DIR"
DATABASE_URL = "DATABASE_URL"
HTTP_HOST = "HTTP_HOST"
HTTP_PORT = "HTTP_PORT"
SPEC_SOURCE = "WABOT_SPEC_SOURCE"
WEBHOOK_SECRET = "WABOT_WEBHOOK_SECRET"
# How the tiers without Kubernetes hand the webhook key over: a path, so the key itself never
# sits in the supervisor's process table (botworker.config reads the file).
WEBHOOK_SECRET_FILE = "WABOT_WEBHOOK_SECRET_FILE"
API_TOKEN = "WABOT_API_TOKEN"
PROXY_URL = "WABOT_PROXY_URL"
# The admin's webhook egress exceptions (wabot/egress.py reads them).
ALLOW_CIDRS_ENV = "WABOT_WEBHOOK_ALLOW_CIDRS"
ALLOW_HOSTS_ENV = "WABOT_WEBHOOK_ALLOW_HOSTS"
DENY_CIDRS_ENV = "WABOT_WEBHOOK_DENY_CIDRS"

WORKER_ROLE = "worker"

# The worker process's runtime settings (issue 28; measured in docs/benchmarks/worker.md):
# Go's scheduler sized for a bot, not for the node (whatsmeow's runtime otherwise takes one P
# per node CPU: on a 64-CPU node +16 threads and +3 MiB at idle), and glibc's malloc kept to
# two arenas however many threads and CPUs there are. After a media send, the memory the file
# took goes back to the system instead of staying with the bot until its next send: Go's heap
# is collected and returned once it passes 32 MiB (whatsmeow's idles at ~18 MiB: no extra
# collections then; while a file is encrypted Go holds two copies of it, whatever the limit),
# and glibc maps every block above 128 KiB on its own (its default raises that threshold to 32
# MiB after the first large free, keeping 16 MiB files in a heap it never shrinks). One worker
# sending 16-32 MiB files one after another (48 MiB at once among them) peaked at 335 MiB
# charged without them, 201 with them (`python -m bench.upload_peak --sequence`,
# docs/benchmarks/worker.md "Upload peak"). Defaults: an admin's template env or a bot's
# spec.env may set any of them to something else.
RUNTIME_TUNING: tuple[tuple[str, str], ...] = (
    ("GOMAXPROCS", "2"), ("MALLOC_ARENA_MAX", "2"), ("GOMEMLIMIT", "32MiB"),
    ("MALLOC_MMAP_THRESHOLD_", "131072"))
TUNING_NAMES = frozenset(name for name, _ in RUNTIME_TUNING)

# Where each Secret reference of a bot comes from, for the messages that name it.
DATABASE_URL_ORIGIN = "spec.database.secretRef"
WEBHOOK_ORIGIN = "spec.webhook.secretRef"
PROXY_ORIGIN = "spec.proxy.secretRef"


class _KeyRef(Protocol):
    """wabot.spec.SecretKeyRef's shape, without importing the spec model."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class SecretRef:
    """A value held in a Secret: key `key` of Secret `name`. `origin` says which setting
    named it (e.g. spec.database.secretRef), for the messages of a tier that cannot read it."""

    name: str
    key: str
    origin: str = ""
    optional: bool = False

    @classmethod
    def of(cls, ref: _KeyRef, origin: str, optional: bool = False) -> SecretRef:
        return cls(name=ref.name, key=ref.key, origin=origin, optional=optional)

    @property
    def what(self) -> str:
        """The part of the spec the Secret belongs to ("database", "proxy", ...)."""
        parts = self.origin.split(".")
        return parts[1] if len(parts) > 2 and parts[0] == "spec" else self.origin


@dataclass(frozen=True)
class FieldRef:
    """A value of the pod itself (the downward API's fieldPath): Kubernetes only."""

    path: str


EnvValue = str | SecretRef | FieldRef


@dataclass(frozen=True)
class WorkerEnv:
    """One worker's identity and settings; None leaves a variable unset (the worker's own
    default then applies, see botworker.config)."""

    bot_name: str
    bot_id: str
    server_name: str
    auth_dir: str
    spec_source: str
    namespace: str | FieldRef | None = None
    pod_name: str | FieldRef | None = None
    lease_name: str | None = None
    database: str | SecretRef | None = None
    http_port: int | None = None
    http_host: str | None = None
    webhook_secret: SecretRef | None = None
    proxy_url: SecretRef | None = None
    # The admin's settings for every bot (wabot.spec.ADMIN_ENV_NAMES), as (name, value).
    admin_env: tuple[tuple[str, str], ...] = ()
    api_token: SecretRef | None = None
    tuning: tuple[tuple[str, str], ...] = RUNTIME_TUNING

    def items(self) -> Iterator[tuple[str, EnvValue]]:
        """(name, value) of every variable that is set, in the operator's order."""
        optional: tuple[tuple[str, EnvValue | None], ...] = (
            (NAMESPACE, self.namespace),
            (POD_NAME, self.pod_name),
            (LEASE_NAME, self.lease_name),
        )
        yield ROLE, WORKER_ROLE
        yield BOT_ID, self.bot_id
        yield SERVER_NAME, self.server_name
        yield BOT_NAME, self.bot_name
        yield from ((k, v) for k, v in optional if v is not None)
        yield AUTH_DIR, self.auth_dir
        if self.database is not None:
            yield DATABASE_URL, self.database
        if self.http_port is not None:
            yield HTTP_PORT, str(self.http_port)
        if self.http_host is not None:
            yield HTTP_HOST, self.http_host
        yield SPEC_SOURCE, self.spec_source
        if self.webhook_secret is not None:
            yield WEBHOOK_SECRET, self.webhook_secret
        if self.proxy_url is not None:
            yield PROXY_URL, self.proxy_url
        yield from self.admin_env
        if self.api_token is not None:
            yield API_TOKEN, self.api_token
        admin = {name for name, _ in self.admin_env}
        yield from ((k, v) for k, v in self.tuning if k not in admin)

    def kubernetes(self) -> list[dict[str, Any]]:
        """The container's `env` list: Secrets as secretKeyRef, pod fields as fieldRef."""
        return [_kubernetes_var(name, value) for name, value in self.items()]


def _kubernetes_var(name: str, value: EnvValue) -> dict[str, Any]:
    if isinstance(value, SecretRef):
        ref: dict[str, Any] = {"name": value.name, "key": value.key}
        if value.optional:
            ref["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": ref}}
    if isinstance(value, FieldRef):
        return {"name": name,
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": value.path}}}
    return {"name": name, "value": value}
