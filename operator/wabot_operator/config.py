"""Operator settings, read once from the environment and validated before anything starts.

A wrong setting (a namespace list with a typo'd separator, a port out of range, a templates
directory that does not exist) stops the operator at startup with a message that names the
variable, instead of surfacing later as a half-working reconcile loop.

Variables (all optional):

- `WABOT_OPERATOR_NAMESPACES`: `*` (all, the default), one namespace, or a comma list;
  kopf globs such as `team-*` are allowed.
- `WABOT_OPERATOR_WORKER_IMAGE`: worker image for bots without `spec.image`
  (default `wabot-worker:<package version>`).
- `WABOT_OPERATOR_DATABASE_SECRET`: `name` or `name:key` (key defaults to `value`) of the
  DSN Secret used, in each bot's namespace, by bots without `spec.database`.
- `WABOT_OPERATOR_TEMPLATES_DIR`: the per-bot templates (default: see
  `default_templates_dir`).
- `WABOT_OPERATOR_METRICS_PORT`: Prometheus `/metrics` port, `0` turns it off (9090).
- `WABOT_OPERATOR_HEALTH_PORT`: kopf's liveness endpoint `/healthz`, `0` off (8080).
- `WABOT_OPERATOR_PEERING_NAME`: the KopfPeering/ClusterKopfPeering object (`wabot`).
- `WABOT_OPERATOR_STANDALONE`: `true` turns peering off; then run one replica only.
- `WABOT_OPERATOR_PRIORITY`: peering priority; default random per process, because kopf
  freezes *all* replicas that share a priority.
- `WABOT_OPERATOR_RECONCILE_INTERVAL`: seconds between level-based passes per bot when no
  watch event wakes it (60): a safety net, since every change the operator acts on arrives
  as a watch event and every timed step sets its own delay. A failed pass is retried after
  10 s (or this interval, if shorter).
- `WABOT_OPERATOR_RESYNC_INTERVAL`: seconds between re-checks of a bot's PVC, RBAC and
  Lease when nothing changed (300), from one LIST per kind and namespace.
- `WABOT_OPERATOR_POD_RESTARTS_PER_SECOND`: fleet-wide pace of pod re-creations (a bot that
  already ran and lost its pod: node loss, image roll-out, mass delete, resume), so a mass
  restart neither redials WhatsApp nor loads the API server all at once (3; 0 = no pacing).
  A new bot's first pod is not paced. A running bot's status writes back to Pending (its pod
  gone or being replaced) are paced at twice this rate.
- `WABOT_OPERATOR_LOG_FORMAT`: `text` or `json`; `WABOT_OPERATOR_LOG_LEVEL`: `DEBUG`,
  `INFO`, `WARNING` or `ERROR`.
- `WABOT_OPERATOR_GATEWAY_SERVICE_ACCOUNT`: `namespace/name` of the send-message gateway's
  ServiceAccount; each bot then gets a Role + RoleBinding `wabot-N-gateway` letting it read
  that bot's API-token Secret `wabot-N-api` (and nothing else). Unset: no such grants.
- `WABOT_OPERATOR_ALLOWED_IMAGES`: what `spec.image` may be (comma list; `*` any; a
  repository such as `reg.example/wabot-worker` allows its tags and digests, an entry ending
  in `/` everything under it). Default: the worker image's repository.
- `WABOT_OPERATOR_ALLOWED_PRIORITY_CLASSES`, `WABOT_OPERATOR_ALLOWED_TOLERATIONS` (taint
  keys), `WABOT_OPERATOR_ALLOWED_NODE_SELECTOR_KEYS`: comma lists, `*` any. Defaults: no
  PriorityClass, no toleration, the well-known topology labels (policy.py).
  See README "Security model" for the rules these feed.
- `WABOT_OPERATOR_WEBHOOK_ALLOW_CIDRS`, `_WEBHOOK_ALLOW_HOSTS`, `_WEBHOOK_DENY_CIDRS`: the
  webhook egress exceptions every bot's worker gets (its WABOT_WEBHOOK_* settings, which a
  spec cannot set): internal receivers a webhook may reach, and ranges it may never reach.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wabot.egress import EgressPolicy
from wabot.settings import ConfigError as SettingError
from wabot.spec import (
    DEFAULT_RESOURCES,
    DEFAULT_STORAGE_SIZE,
    DNS_SUBDOMAIN_PATTERN,
    NAME_PATTERN,
    QUANTITY_PATTERN,
    ResourcesSpec,
    SecretKeyRef,
)
from wabot.workerenv import ALLOW_CIDRS_ENV, ALLOW_HOSTS_ENV, DENY_CIDRS_ENV
from wabot_operator.policy import DEFAULT_NODE_SELECTOR_KEYS, BotPolicy, image_repository

ENV_PREFIX = "WABOT_OPERATOR_"
TEMPLATE_FILES = (
    "pvc.yaml",
    "serviceaccount.yaml",
    "role.yaml",
    "rolebinding.yaml",
    "lease.yaml",
    "pod.yaml",
)


def _package_version() -> str:
    try:
        return metadata.version("wabot")
    except metadata.PackageNotFoundError:
        return "latest"


def default_templates_dir() -> Path | None:
    """Where the templates are when WABOT_OPERATOR_TEMPLATES_DIR is unset.

    They are not package data (pyproject ships Python only), so look where a checkout or an
    image puts them: `operator/bot-templates/`, beside this package in a source tree (editable
    installs, tests, `python -m wabot_operator` from the repo), then `/etc/wabot/bot-templates` and
    `<prefix>/share/wabot/bot-templates` (what an image copies them to).
    """
    candidates = [
        Path(__file__).resolve().parents[1] / "bot-templates",
        Path("/etc/wabot/bot-templates"),
        Path(sys.prefix) / "share" / "wabot" / "bot-templates",
    ]
    for candidate in candidates:
        if (candidate / "pod.yaml").is_file():
            return candidate
    return None


class ConfigError(SettingError):
    """A setting is wrong; the message names the environment variable."""


# Shapes of the entries of the comma lists (checked so a typo stops the start, not a bot):
# kopf's namespace patterns (globs, `!` to exclude), image references (and `repo/` prefixes),
# label and taint keys (`prefix/name`), Secret keys.
_NAMESPACE_GLOB = re.compile(r"!?[a-z0-9*?\[\]-]{1,63}")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,511}")
_LABEL_KEY = re.compile(
    r"(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN)


def _entries_match(values: tuple[str, ...] | None, shape: re.Pattern[str], what: str
                   ) -> tuple[str, ...] | None:
    for value in values or ():
        if value != "*" and not shape.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
    return values


class GatewayAccount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(pattern=NAME_PATTERN, max_length=63)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces (or kopf globs) to watch; empty = cluster-wide."
    )
    worker_image: str = Field(default_factory=lambda: f"wabot-worker:{_package_version()}",
                              min_length=1, max_length=512)
    database_secret: SecretKeyRef | None = None
    templates_dir: Path
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    health_port: int = Field(default=8080, ge=0, le=65535)
    peering_name: str = Field(default="wabot", pattern=NAME_PATTERN, max_length=63)
    standalone: bool = False
    priority: int = Field(default_factory=lambda: random.randint(1, 2**30))
    reconcile_interval: float = Field(default=60.0, gt=0, le=3600)
    resync_interval: float = Field(default=300.0, gt=0, le=86400)
    pod_restarts_per_second: float = Field(default=3.0, ge=0, le=1000)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    gateway_service_account: GatewayAccount | None = None
    # Bot defaults for what a WhatsAppBot leaves unset (the chart's `bots.resources/storage`).
    default_resources: ResourcesSpec = DEFAULT_RESOURCES
    default_storage_size: str = Field(default=DEFAULT_STORAGE_SIZE, pattern=QUANTITY_PATTERN)
    default_storage_class: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    # The admin's allow-lists for what a bot's spec may ask of the cluster (policy.py).
    allowed_images: tuple[str, ...] | None = None  # None: the worker image's repository
    allowed_priority_classes: tuple[str, ...] = ()
    allowed_tolerations: tuple[str, ...] = ()
    allowed_node_selector_keys: tuple[str, ...] = DEFAULT_NODE_SELECTOR_KEYS
    # Passed to every worker as WABOT_WEBHOOK_ALLOW_CIDRS/_ALLOW_HOSTS/_DENY_CIDRS.
    webhook_allow_cidrs: str = ""
    webhook_allow_hosts: str = ""
    webhook_deny_cidrs: str = ""

    @model_validator(mode="after")
    def _webhook_egress(self) -> OperatorConfig:
        # The worker's own parser: a list the workers would refuse stops the operator instead
        # of every bot's pod.
        EgressPolicy.parse(self.webhook_allow_cidrs, self.webhook_allow_hosts,
                           self.webhook_deny_cidrs)
        return self

    def worker_env(self) -> tuple[tuple[str, str], ...]:
        """The admin's settings every bot's worker gets (wabot.spec.ADMIN_ENV_NAMES)."""
        return tuple((name, value) for name, value in (
            (ALLOW_CIDRS_ENV, self.webhook_allow_cidrs),
            (ALLOW_HOSTS_ENV, self.webhook_allow_hosts),
            (DENY_CIDRS_ENV, self.webhook_deny_cidrs)) if value)

    def bot_policy(self) -> BotPolicy:
        images = self.allowed_images
        if images is None:
            images = (image_repository(self.worker_image),)
        return BotPolicy(
            images=images, priority_classes=self.allowed_priority_classes,
            toleration_keys=self.allowed_tolerations,
            node_selector_keys=self.allowed_node_selector_keys,
            reserved_secrets=(self.database_secret.name,) if self.database_secret else ())

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ns in value:
            if not ns or not _NAMESPACE_GLOB.fullmatch(ns):
                raise ValueError(f"bad namespace {ns!r} (a namespace name or kopf glob)")
        return value

    @field_validator("worker_image")
    @classmethod
    def _worker_image(cls, value: str) -> str:
        if not _IMAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not an image reference (registry/repository:tag)")
        return value

    @field_validator("allowed_images")
    @classmethod
    def _allowed_images(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _entries_match(value, _IMAGE, "an image, a repository or a prefix ending in /")

    @field_validator("allowed_priority_classes")
    @classmethod
    def _allowed_priority_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _entries_match(value, _DNS_SUBDOMAIN, "a PriorityClass name") or ()

    @field_validator("allowed_tolerations", "allowed_node_selector_keys")
    @classmethod
    def _allowed_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _entries_match(value, _LABEL_KEY, "a label or taint key ([prefix/]name)") or ()

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path) -> Path:
        missing = [name for name in TEMPLATE_FILES if not (value / name).is_file()]
        if missing:
            raise ValueError(f"{value} lacks {', '.join(missing)}")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Build the config from WABOT_OPERATOR_* variables (os.environ by default)."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for name, (field, parse) in SETTINGS.items():
            value = env.get(ENV_PREFIX + name)
            if value is None or (not value.strip() and name not in LISTS):
                continue  # unset, or empty: the default (a list set empty: none)
            parsed = parse(value.strip())
            if parsed is not None:
                raw[field] = parsed
        if "templates_dir" not in raw:
            raw["templates_dir"] = _found_templates_dir()
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{ENV_PREFIX}{_env_name(err['loc'])}: {err['msg']}" if err["loc"]
                # The egress lists' check names the workers' variables; these are ours.
                else err["msg"].removeprefix("Value error, ").replace(
                    "WABOT_WEBHOOK_", f"{ENV_PREFIX}WEBHOOK_")
                for err in e.errors()
            )
            raise ConfigError(problems) from e


# --- reading the variables: each setting's parser, then one table ----------------------------


def _list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _namespaces(value: str) -> tuple[str, ...] | None:
    return None if value in ("*", "all") else _list(value)  # None: cluster-wide (the default)


def _database_secret(value: str) -> dict[str, str]:
    name, _, key = value.partition(":")
    if key and not _SECRET_KEY.fullmatch(key.replace("{serverName}", "tenant")):
        raise ConfigError(f"{ENV_PREFIX}DATABASE_SECRET: the key of name:key is not a "
                          "Secret key (letters, digits, '-', '_', '.', {serverName})")
    return {"name": name, **({"key": key} if key else {})}


def _gateway_account(value: str) -> dict[str, str]:
    ns, sep, sa = value.partition("/")
    return {"namespace": ns, "name": sa} if sep else {"namespace": "", "name": value}


def _default_resources(value: str) -> ResourcesSpec:
    try:
        given = ResourcesSpec.model_validate(json.loads(value))
    except (ValueError, ValidationError) as e:
        detail = str(e)
        if isinstance(e, ValidationError):  # its text spans lines: the first error
            err = e.errors()[0]
            detail = f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
        raise ConfigError(
            f"{ENV_PREFIX}DEFAULT_RESOURCES: not a JSON object of requests/limits "
            f"with cpu/memory quantities: {detail}") from e
    return given.over(DEFAULT_RESOURCES)


def _found_templates_dir() -> Path:
    found = default_templates_dir()
    if found is None:
        raise ConfigError(
            f"{ENV_PREFIX}TEMPLATES_DIR: no bot-templates directory found; set it to "
            "the directory holding pod.yaml, pvc.yaml, ... (operator/bot-templates/ in the repo)")
    return found


def _as_is(value: str) -> str:
    return value


# Variable (after the prefix) -> (config field, parser of its stripped value). One table, so
# the variables the operator reads, their fields and the names in error messages cannot drift.
SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "NAMESPACES": ("namespaces", _namespaces),
    "WORKER_IMAGE": ("worker_image", _as_is),
    "DATABASE_SECRET": ("database_secret", _database_secret),
    "TEMPLATES_DIR": ("templates_dir", Path),
    "METRICS_PORT": ("metrics_port", _as_is),
    "HEALTH_PORT": ("health_port", _as_is),
    "PEERING_NAME": ("peering_name", _as_is),
    "STANDALONE": ("standalone", _as_is),
    "PRIORITY": ("priority", _as_is),
    "RECONCILE_INTERVAL": ("reconcile_interval", _as_is),
    "RESYNC_INTERVAL": ("resync_interval", _as_is),
    "POD_RESTARTS_PER_SECOND": ("pod_restarts_per_second", _as_is),
    "GATEWAY_SERVICE_ACCOUNT": ("gateway_service_account", _gateway_account),
    "DEFAULT_RESOURCES": ("default_resources", _default_resources),
    "DEFAULT_STORAGE_SIZE": ("default_storage_size", _as_is),
    "DEFAULT_STORAGE_CLASS": ("default_storage_class", _as_is),
    "ALLOWED_IMAGES": ("allowed_images", _list),
    "ALLOWED_PRIORITY_CLASSES": ("allowed_priority_classes", _list),
    "ALLOWED_TOLERATIONS": ("allowed_tolerations", _list),
    "ALLOWED_NODE_SELECTOR_KEYS": ("allowed_node_selector_keys", _list),
    "WEBHOOK_ALLOW_CIDRS": ("webhook_allow_cidrs", _as_is),
    "WEBHOOK_ALLOW_HOSTS": ("webhook_allow_hosts", _as_is),
    "WEBHOOK_DENY_CIDRS": ("webhook_deny_cidrs", _as_is),
    "LOG_FORMAT": ("log_format", str.lower),
    "LOG_LEVEL": ("log_level", str.upper),
}
# Allow-lists: set but empty means an empty list (nothing allowed), not the default.
LISTS = frozenset({"ALLOWED_IMAGES", "ALLOWED_PRIORITY_CLASSES", "ALLOWED_TOLERATIONS",
                   "ALLOWED_NODE_SELECTOR_KEYS"})
_FIELD_TO_ENV = {field: name for name, (field, _) in SETTINGS.items()}


def _env_name(loc: tuple[int | str, ...]) -> str:
    return _FIELD_TO_ENV.get(str(loc[0]), str(loc[0]).upper()) if loc else "?"
