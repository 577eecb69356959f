"""The WhatsAppBot spec and status as typed models: the one contract shared by the operator,
the worker, the monolith's bots file and the Compose generator.

Field names are the CRD's camelCase names (aliases); Python code uses snake_case. Unknown
fields are refused here, because the bots file of the non-Kubernetes tiers has no API server
to prune them: a typo must be an error, not a silently ignored setting. `crds/` holds the same
shape as an OpenAPI schema; tests/unit/test_crd_matches_models.py keeps the two in step.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "wabot.io"
API_VERSION = "v1alpha1"
KIND = "WhatsAppBot"
PLURAL = "whatsappbots"

# Names used in fields, labels and the auth layout must stay valid DNS labels once prefixed.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# ASCII on purpose: the API server checks CRD patterns with RE2, where \w is ASCII only, and a
# small class keeps pydantic's compiled validator small (a Unicode \w{1,32} costs ~6 MB of RSS).
COMMAND_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
PHONE_PATTERN = r"^[1-9][0-9]{6,14}$"  # E.164 digits, no '+'
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
# Plugin entry-point names (the `wabot.plugins` group); dots allow namespaced names.
PLUGIN_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
# Subdomain-style names of cluster objects (PriorityClass, StorageClass).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# A command prefix has no whitespace. Not `\S`: the API server evaluates CRD patterns with Go's
# RE2, whose \s is ASCII (and leaves out \v), while pydantic's Rust regex has Unicode \s, so a
# prefix of U+00A0 or U+3000 passed `kubectl apply` and the operator then refused the spec.
# The Unicode White_Space characters are listed instead (the \s of pydantic's engine), with
# escapes both engines read alike; the CRD carries this very string (tests/unit/
# test_crd_patterns.py checks both engines over every code point).
PREFIX_PATTERN = (
    r"^[^\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}"
    r"\x{3000}]+$"
)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class _SpecModel(_Model):
    """A part of the spec, which people write by hand (bots file, database row, manifest).

    Strict: a value of the wrong type is an error, never coerced. In pydantic's default (lax)
    mode "20" became 20, "yes" and 1 became true and true became 1, so a bots file the API
    server would refuse (its schema types are exact) ran on the tiers without one, and a quoted
    "false" meant true. Kubernetes hands the operator and the worker exact JSON types, so
    strictness changes nothing for them. Status models stay lax: they read enum values and
    timestamps from JSON strings.
    """

    model_config = ConfigDict(strict=True)


class SecretKeyRef(_SpecModel):
    """A key of a Secret in the bot's own namespace; only its name ever appears in status."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253)
    key: str = Field(default="value", min_length=1, max_length=253)


class PairingSpec(_SpecModel):
    method: Literal["qr", "code"] = "qr"
    phone_number: str | None = Field(default=None, pattern=PHONE_PATTERN)

    @model_validator(mode="after")
    def _phone_for_code(self) -> PairingSpec:
        if self.method == "code" and not self.phone_number:
            raise ValueError("pairing.phoneNumber is required when pairing.method is 'code'")
        return self


BuiltinCommand = Literal["help", "menu", "ping", "info"]
ALL_BUILTINS: tuple[BuiltinCommand, ...] = ("help", "menu", "ping", "info")


CommandName = Annotated[str, Field(pattern=COMMAND_NAME_PATTERN, min_length=1, max_length=32)]
PluginName = Annotated[str, Field(pattern=PLUGIN_NAME_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63)]


class CustomCommand(_SpecModel):
    name: CommandName
    aliases: list[CommandName] = Field(default_factory=list, max_length=10)
    response: str = Field(min_length=1, max_length=4096)
    description: str = Field(default="", max_length=200)


class CommandsSpec(_SpecModel):
    prefix: str = Field(default="!", min_length=1, max_length=3, pattern=PREFIX_PATTERN)
    builtins: list[BuiltinCommand] = Field(
        default_factory=lambda: list(ALL_BUILTINS), max_length=len(ALL_BUILTINS)
    )
    custom: list[CustomCommand] = Field(default_factory=list, max_length=100)
    plugins: list[PluginName] = Field(default_factory=list, max_length=20)


class SettingsSpec(_SpecModel):
    """Per-bot behaviour, visible to every command through CommandContext.settings."""

    ignore_groups: bool = True
    auto_read: bool = False
    reject_calls: bool = False
    welcome_text: str | None = Field(default=None, max_length=4096)
    max_message_length: int = Field(default=4096, ge=1, le=65536)


WebhookEvent = Literal["message", "command", "connection", "pairing"]


def _default_webhook_events() -> list[WebhookEvent]:
    return ["message"]


class WebhookSpec(_SpecModel):
    """Signed deliveries of the bot's events (botworker/webhooks.py). The signing key is
    required: a receiver must be able to tell wabot's deliveries from anyone else's."""

    url: str = Field(pattern=r"^https?://", max_length=2048)
    secret_ref: SecretKeyRef
    events: list[WebhookEvent] = Field(default_factory=_default_webhook_events, max_length=4)


class ProxySpec(_SpecModel):
    """The proxy the WhatsApp connection goes through (http://, https:// or socks5://, with
    optional credentials). The URL is a secret: it comes from a Secret key, never the spec."""

    secret_ref: SecretKeyRef


class RateLimitSpec(_SpecModel):
    """Outgoing messages per minute; WhatsApp bans numbers that burst."""

    per_chat_per_minute: int = Field(default=20, ge=1, le=600)
    per_bot_per_minute: int = Field(default=60, ge=1, le=6000)


class ResourceList(_SpecModel):
    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)


def _overlay(over: ResourceList, under: ResourceList) -> ResourceList:
    return ResourceList(cpu=over.cpu or under.cpu, memory=over.memory or under.memory)


class ResourcesSpec(_SpecModel):
    """A key left unset takes the platform default (the operator's, configurable per install),
    so an admin can change every bot's default without touching any WhatsAppBot."""

    requests: ResourceList = Field(default_factory=ResourceList)
    limits: ResourceList = Field(default_factory=ResourceList)

    def over(self, defaults: ResourcesSpec) -> ResourcesSpec:
        """This spec with each unset key taken from `defaults`."""
        return ResourcesSpec(requests=_overlay(self.requests, defaults.requests),
                             limits=_overlay(self.limits, defaults.limits))


# The built-in defaults: an idle worker measures ~90 MB RSS (bench/), so 96Mi is reserved and
# 256Mi leaves room for bursts of commands and database access.
DEFAULT_RESOURCES = ResourcesSpec(requests=ResourceList(cpu="50m", memory="96Mi"),
                                  limits=ResourceList(cpu="500m", memory="256Mi"))
DEFAULT_STORAGE_SIZE = "256Mi"


class StorageSpec(_SpecModel):
    # None: the operator's default (DEFAULT_STORAGE_SIZE unless configured otherwise).
    size: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)
    storage_class_name: str | None = Field(
        default=None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253
    )
    retain_policy: Literal["Retain", "Delete"] = "Retain"


class DatabaseSpec(_SpecModel):
    secret_ref: SecretKeyRef


# The worker's environment contract (docs/design.md): set by whoever starts the worker, never
# by a bot's own `env` (a bot must not rename itself, move its session or switch its role).
RESERVED_ENV_NAMES: tuple[str, ...] = (
    "ROLE",
    "BOT_ID",
    "SERVER_NAME",
    "WABOT_BOT_NAME",
    "WABOT_NAMESPACE",
    "POD_NAME",
    "WABOT_LEASE_NAME",
    "AUTH_DIR",
    "DATABASE_URL",
    "HTTP_PORT",
    "WABOT_SPEC_SOURCE",
    "WABOT_WEBHOOK_SECRET",
    "WABOT_API_TOKEN",
    "WABOT_PROXY_URL",
    # The admin's webhook egress exceptions (botworker/egress.py): a bot's own env setting them
    # would let its tenant open the cluster's internal addresses to its webhook.
    "WABOT_WEBHOOK_ALLOW_CIDRS",
    "WABOT_WEBHOOK_ALLOW_HOSTS",
    "WABOT_WEBHOOK_DENY_CIDRS",
)
# Reserved names the admin sets for every bot of a tier, which is why the fleet tiers pass the
# supervisor's own value down to each worker (fleet/workers.py) instead of dropping it.
ADMIN_ENV_NAMES: tuple[str, ...] = (
    "WABOT_WEBHOOK_ALLOW_CIDRS",
    "WABOT_WEBHOOK_ALLOW_HOSTS",
    "WABOT_WEBHOOK_DENY_CIDRS",
)


class EnvVar(_SpecModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    value: str = Field(default="", max_length=8192)

    @model_validator(mode="after")
    def _not_reserved(self) -> EnvVar:
        if self.name in RESERVED_ENV_NAMES:
            raise ValueError(f"env {self.name} is set by wabot itself and cannot be overridden")
        return self


class Toleration(_SpecModel):
    """A pod toleration, typed so the API server refuses a malformed one at apply time
    instead of the operator finding out when it creates the pod."""

    key: str | None = Field(default=None, max_length=317)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


# core/v1 Affinity, typed: an untyped object let a spec nest 5,000 levels deep, which the API
# server admitted and the operator's recursion could not survive. The bounds are wabot's (the
# API server's own types have none), wide enough for any placement a bot needs.
QualifiedName = Annotated[str, Field(min_length=1, max_length=317)]


class NodeSelectorRequirement(_SpecModel):
    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[LabelValue] = Field(default_factory=list, max_length=64)


class NodeSelectorTerm(_SpecModel):
    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=16)
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=16)


class NodeSelector(_SpecModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=16)


class PreferredSchedulingTerm(_SpecModel):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(_SpecModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16)


class LabelSelectorRequirement(_SpecModel):
    key: QualifiedName
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list, max_length=64)


class LabelSelector(_SpecModel):
    match_labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=32)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list,
                                                              max_length=16)


class PodAffinityTerm(_SpecModel):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list,
                                                                   max_length=16)
    topology_key: QualifiedName
    match_label_keys: list[QualifiedName] = Field(default_factory=list, max_length=16)
    mismatch_label_keys: list[QualifiedName] = Field(default_factory=list, max_length=16)


class WeightedPodAffinityTerm(_SpecModel):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(_SpecModel):
    """podAffinity and podAntiAffinity have the same shape."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16)
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=16)


class Affinity(_SpecModel):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None

    def to_pod(self) -> dict[str, object]:
        """As the pod spec takes it: unset and empty fields left out."""
        return self.model_dump(by_alias=True, exclude_defaults=True)


class WhatsAppBotSpec(_SpecModel):
    server_name: str = Field(pattern=NAME_PATTERN, max_length=63)
    bot_id: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63)
    suspend: bool = False
    pairing: PairingSpec = Field(default_factory=PairingSpec)
    commands: CommandsSpec = Field(default_factory=CommandsSpec)
    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    features: dict[str, bool] = Field(default_factory=dict, max_length=64)
    webhook: WebhookSpec | None = None
    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    image: str | None = Field(default=None, max_length=512)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    node_selector: dict[str, LabelValue] = Field(default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    affinity: Affinity | None = None
    priority_class_name: str | None = Field(
        default=None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253
    )
    database: DatabaseSpec | None = None
    proxy: ProxySpec | None = None

    def effective_bot_id(self, name: str) -> str:
        """botId defaults to the resource's metadata.name (the CRD cannot default from it)."""
        return self.bot_id or name


# --- status -------------------------------------------------------------------------------


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PAIRING = "Pairing"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    LOGGED_OUT = "LoggedOut"
    SUSPENDED = "Suspended"
    FAILED = "Failed"


class WorkerState(enum.StrEnum):
    """What the worker last saw of its WhatsApp session (written to status.worker.state)."""

    STARTING = "Starting"
    PAIRING = "Pairing"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    LOGGED_OUT = "LoggedOut"
    STREAM_REPLACED = "StreamReplaced"
    TEMPORARY_BAN = "TemporaryBan"
    STOPPED = "Stopped"


class PairingStatus(_Model):
    method: Literal["qr", "code"]
    qr: str | None = Field(default=None, max_length=4096)
    code: str | None = Field(default=None, max_length=64)
    expires_at: datetime | None = None


class AccountStatus(_Model):
    jid: str = Field(max_length=256)
    push_name: str | None = Field(default=None, max_length=256)


CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class WorkerReport(_Model):
    """status.worker: written only by the bot's own worker, with a merge patch on this subtree."""

    state: WorkerState
    pod_name: str | None = Field(default=None, max_length=253)
    pairing: PairingStatus | None = None
    account: AccountStatus | None = None
    last_connected_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=1024)
    # Why the worker cannot go on, machine-readable (e.g. InvalidProxy): a problem of its
    # configuration that only a change by a human fixes. The operator turns it into a condition.
    error_reason: str | None = Field(
        default=None, pattern=CONDITION_REASON_PATTERN, max_length=64
    )
    reconnects: int = Field(default=0, ge=0)
    updated_at: datetime




class Condition(_Model):
    """KEP-1623 condition (the bounds are metav1.Condition's)."""

    type: str = Field(pattern=CONDITION_TYPE_PATTERN, max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=CONDITION_REASON_PATTERN, min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)


class WhatsAppBotStatus(_Model):
    """The whole status subresource. The operator writes every field but `worker`; the worker
    writes only `worker`. Each sends a merge patch of its own fields, so neither clobbers the
    other."""

    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    observed_generation: int | None = Field(default=None, ge=0)
    pod_name: str | None = Field(default=None, max_length=253)
    restarts: int = Field(default=0, ge=0)
    worker: WorkerReport | None = None
