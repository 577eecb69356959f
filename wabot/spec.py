"""The WhatsAppBot spec and status as typed models: the one contract shared by the operator,
the worker, the monolith's bots file and the Compose generator.

Field names are the CRD's camelCase names (aliases); Python code uses snake_case. Unknown
fields are refused here, because the bots file of the non-Kubernetes tiers has no API server
to prune them: a typo must be an error, not a silently ignored setting. `crds/` holds the same
shape as an OpenAPI schema, generated from these models by wabot/crd.py: what only the CRD
uses (descriptions for `kubectl explain`, CEL rules, list types, printer columns) sits on the
fields themselves, as `Field(description=...)` and `json_schema_extra=crd(...)`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

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



# --- what only the CRD uses, kept on the fields it belongs to (wabot/crd.py reads it) --------


def crd(*, item: str | JsonDict | None = None, value: str | None = None,
        list_type: str | None = None, map_keys: tuple[str, ...] = (),
        rules: tuple[JsonDict, ...] = (), fmt: str | None = None,
        properties: dict[str, str] | None = None) -> JsonDict:
    """A field's `json_schema_extra`: a partial schema node that wabot/crd.py merges over the
    one it derives from the field's type. `item` and `value` describe a list's items and a
    map's values (a string is their description), `properties` the nested fields' descriptions
    where one model serves two fields that explain it differently."""
    out: dict[str, Any] = {}
    if fmt is not None:
        out["format"] = fmt
    if list_type is not None:
        out["x-kubernetes-list-type"] = list_type
    if map_keys:
        out["x-kubernetes-list-map-keys"] = list(map_keys)
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    if item is not None:
        out["items"] = {"description": item} if isinstance(item, str) else item
    if value is not None:
        out["additionalProperties"] = {"description": value}
    if properties:
        out["properties"] = {k: {"description": v} for k, v in properties.items()}
    return out


def cel(rule: str, message: str, *, field_path: str | None = None,
        reason: str | None = None) -> JsonDict:
    """An x-kubernetes-validations rule: what the API server checks that a schema cannot."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


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

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="The Secret's name.")
    key: str = Field(default="value", min_length=1, max_length=253,
                     description="The key inside the Secret.")


class PairingSpec(_SpecModel):
    method: Literal["qr", "code"] = Field(default="qr", description=(
        "qr shows a QR code to scan (in status.worker.pairing); code shows an 8-character code "
        "to type on the phone registered as phoneNumber."))
    phone_number: str | None = Field(default=None, pattern=PHONE_PATTERN, description=(
        "The phone number to pair with, E.164 digits without the '+' (for example "
        "4915112345678). Required when method is code."))

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
    name: CommandName = Field(description="The command's name, typed after the prefix.")
    aliases: list[CommandName] = Field(
        default_factory=list, max_length=10, description="Other names that run the same command.",
        json_schema_extra=crd(item="An alias of the command."))
    response: str = Field(min_length=1, max_length=4096,
                          description="The text the bot replies with.")
    description: str = Field(default="", max_length=200,
                             description="One line shown by help/menu.")


class CommandsSpec(_SpecModel):
    prefix: str = Field(default="!", min_length=1, max_length=3, pattern=PREFIX_PATTERN,
                        description=(
                            "The characters that start a command (for example ! in !ping). No "
                            "whitespace, Unicode spaces included (U+00A0, U+3000, ...)."))
    builtins: list[BuiltinCommand] = Field(
        default_factory=lambda: list(ALL_BUILTINS), max_length=len(ALL_BUILTINS),
        description="Which built-in commands are on.",
        json_schema_extra=crd(item="A built-in command.", list_type="set"),
    )
    custom: list[CustomCommand] = Field(
        default_factory=list, max_length=100, description="Text replies to custom commands.",
        json_schema_extra=crd(item="A command that answers with a fixed text.", list_type="map",
                              map_keys=("name",)))
    plugins: list[PluginName] = Field(
        default_factory=list, max_length=20, description=(
            "Plugin entry points (group wabot.plugins) loaded into this bot's own command "
            "registry only."),
        json_schema_extra=crd(item="The name of a plugin entry point.", list_type="set"))


class SettingsSpec(_SpecModel):
    """Per-bot behaviour, visible to every command through CommandContext.settings."""

    ignore_groups: bool = Field(default=True, description="Do not answer messages in group chats.")
    auto_read: bool = Field(default=False, description="Mark incoming messages as read.")
    reject_calls: bool = Field(default=False, description="Decline incoming calls.")
    welcome_text: str | None = Field(
        default=None, max_length=4096,
        description="Sent to a chat the first time it writes to the bot.")
    max_message_length: int = Field(
        default=4096, ge=1, le=65536,
        description="Longest incoming message (characters) the bot parses.")


WebhookEvent = Literal["message", "command", "connection", "pairing"]


def _default_webhook_events() -> list[WebhookEvent]:
    return ["message"]


class WebhookSpec(_SpecModel):
    """Signed deliveries of the bot's events (botworker/webhooks.py). The signing key is
    required: a receiver must be able to tell wabot's deliveries from anyone else's."""

    url: str = Field(pattern=r"^https?://", max_length=2048,
                     description="The http(s) URL that receives the deliveries.")
    secret_ref: SecretKeyRef = Field(description=(
        "The Secret (in the bot's namespace) whose key signs the deliveries (given to the "
        "worker as WABOT_WEBHOOK_SECRET; never written to status)."))
    events: list[WebhookEvent] = Field(
        default_factory=_default_webhook_events, max_length=4,
        description="Which events are delivered.", json_schema_extra=crd(item="An event type."))


class ProxySpec(_SpecModel):
    """The proxy the WhatsApp connection goes through (http://, https:// or socks5://, with
    optional credentials). The URL is a secret: it comes from a Secret key, never the spec."""

    secret_ref: SecretKeyRef = Field(description="The Secret key holding the proxy URL.")


class RateLimitSpec(_SpecModel):
    """Outgoing messages per minute; WhatsApp bans numbers that burst."""

    per_chat_per_minute: int = Field(default=20, ge=1, le=600,
                                     description="Most messages per minute to one chat.")
    per_bot_per_minute: int = Field(default=60, ge=1, le=6000,
                                    description="Most messages per minute from the whole bot.")


class ResourceList(_SpecModel):
    """Its fields' descriptions are on ResourcesSpec's: they name each side's built-in default."""

    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)


def _overlay(over: ResourceList, under: ResourceList) -> ResourceList:
    return ResourceList(cpu=over.cpu or under.cpu, memory=over.memory or under.memory)


class ResourcesSpec(_SpecModel):
    """A key left unset takes the platform default (the operator's, configurable per install),
    so an admin can change every bot's default without touching any WhatsAppBot."""

    requests: ResourceList = Field(
        default_factory=ResourceList, description=(
            "What the scheduler reserves for the bot. Unset keys take the operator's defaults "
            "(built in: cpu 50m, memory 96Mi)."),
        json_schema_extra=crd(properties={"cpu": "CPU quantity, for example 50m.",
                                          "memory": "Memory quantity, for example 96Mi."}))
    limits: ResourceList = Field(
        default_factory=ResourceList, description=(
            "The most the bot may use. Unset keys take the operator's defaults (built in: cpu "
            "500m, memory 256Mi)."),
        json_schema_extra=crd(properties={"cpu": "CPU quantity, for example 500m.",
                                          "memory": "Memory quantity, for example 256Mi."}))

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
    size: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32,
                             description=(
                                 "Requested size of the volume; the operator's default (built "
                                 "in: 256Mi) if unset."))
    storage_class_name: str | None = Field(
        default=None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description=(
            "StorageClass of the volume; the operator's default, else the cluster's default "
            "StorageClass, if unset.")
    )
    retain_policy: Literal["Retain", "Delete"] = Field(default="Retain", description=(
        "Retain keeps the volume (and the session) when the WhatsAppBot is deleted; Delete "
        "removes it with the bot."))


class DatabaseSpec(_SpecModel):
    secret_ref: SecretKeyRef = Field(description="The Secret key holding the DSN (DATABASE_URL).")


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
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128,
                      description="The variable's name.")
    value: str = Field(default="", max_length=8192, description="The variable's value.")

    @model_validator(mode="after")
    def _not_reserved(self) -> EnvVar:
        if self.name in RESERVED_ENV_NAMES:
            raise ValueError(f"env {self.name} is set by wabot itself and cannot be overridden")
        return self


class Toleration(_SpecModel):
    """A pod toleration, typed so the API server refuses a malformed one at apply time
    instead of the operator finding out when it creates the pod."""

    key: str | None = Field(default=None, max_length=317, description=(
        "The taint key; empty with operator Exists matches all taints."))
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (the default).")
    value: str | None = Field(default=None, max_length=63, description=(
        "The taint value the toleration matches (with Equal)."))
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches all effects.")
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated before eviction.")


# core/v1 Affinity, typed: an untyped object let a spec nest 5,000 levels deep, which the API
# server admitted and the operator's recursion could not survive. The bounds are wabot's (the
# API server's own types have none), wide enough for any placement a bot needs.
QualifiedName = Annotated[str, Field(min_length=1, max_length=317)]


_KEY = "The label (or field) key."
_OPERATOR = "How the key relates to the values."
_VALUES = "The values the operator compares with."
_REQUIREMENTS = "Requirements that must all hold."
_REQUIRED_TERMS = "Rules that must hold for the pod to be scheduled."
_PREFERRED_TERMS = "Rules the scheduler prefers, by weight."
_WEIGHT = "The weight of this preference, 1-100."


class NodeSelectorRequirement(_SpecModel):
    key: QualifiedName = Field(description=_KEY)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description=_OPERATOR)
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description=_VALUES,
                                     json_schema_extra=crd(item="A value."))


class NodeSelectorTerm(_SpecModel):
    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16, description=_REQUIREMENTS,
        json_schema_extra=crd(item="A requirement."))
    match_fields: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=16,
        description="Requirements on node fields that must all hold.",
        json_schema_extra=crd(item="A requirement on a node field."))


class NodeSelector(_SpecModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=16, description="Node selector terms; any one matching is enough.",
        json_schema_extra=crd(item="A node selector term."))


class PreferredSchedulingTerm(_SpecModel):
    weight: int = Field(ge=1, le=100, description=_WEIGHT)
    preference: NodeSelectorTerm = Field(
        description="The node selector term this preference is for.")


class NodeAffinity(_SpecModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description=_REQUIRED_TERMS)
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16, description=_PREFERRED_TERMS,
        json_schema_extra=crd(item="A weighted preference."))


class LabelSelectorRequirement(_SpecModel):
    key: QualifiedName = Field(description=_KEY)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description=_OPERATOR)
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description=_VALUES,
                                     json_schema_extra=crd(item="A value."))


class LabelSelector(_SpecModel):
    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Labels that must all match exactly.",
        json_schema_extra=crd(value="The label value."))
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description=_REQUIREMENTS,
        json_schema_extra=crd(item="A requirement."))


class PodAffinityTerm(_SpecModel):
    label_selector: LabelSelector | None = Field(
        default=None, description="The pods this term is about, by label.")
    namespace_selector: LabelSelector | None = Field(
        default=None, description="The namespaces of those pods, by label.")
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=16,
        description="The namespaces of those pods; empty: the bot's own.",
        json_schema_extra=crd(item="A namespace name."))
    topology_key: QualifiedName = Field(description=(
        'The node label whose value defines "together" (e.g. kubernetes.io/hostname).'))
    match_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=16, description=(
            "Label keys whose values are taken from the bot's pod to narrow labelSelector."),
        json_schema_extra=crd(item="A label key."))
    mismatch_label_keys: list[QualifiedName] = Field(
        default_factory=list, max_length=16,
        description="Label keys whose values must differ from the bot's pod's.",
        json_schema_extra=crd(item="A label key."))


class WeightedPodAffinityTerm(_SpecModel):
    weight: int = Field(ge=1, le=100, description=_WEIGHT)
    pod_affinity_term: PodAffinityTerm = Field(
        description="The pod affinity term this preference is for.")


class PodAffinity(_SpecModel):
    """podAffinity and podAntiAffinity have the same shape."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16, description=_REQUIRED_TERMS,
        json_schema_extra=crd(item="A pod affinity term."))
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=16, description=_PREFERRED_TERMS,
        json_schema_extra=crd(item="A weighted preference."))


class Affinity(_SpecModel):
    node_affinity: NodeAffinity | None = Field(
        default=None, description="Which nodes the pod may run on (core/v1 NodeAffinity).")
    pod_affinity: PodAffinity | None = Field(
        default=None, description="Pods this bot should run beside (core/v1 PodAffinity).")
    pod_anti_affinity: PodAffinity | None = Field(
        default=None,
        description="Pods this bot should run apart from (core/v1 PodAntiAffinity).")

    def to_pod(self) -> dict[str, object]:
        """As the pod spec takes it: unset and empty fields left out."""
        return self.model_dump(by_alias=True, exclude_defaults=True)


_RESERVED_ENV_RULE = cel(
    "!(self.name in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV_NAMES) + "])",
    "this variable is set by wabot itself and cannot be overridden",
    field_path=".name", reason="FieldValueForbidden")


class WhatsAppBotSpec(_SpecModel):
    model_config = ConfigDict(json_schema_extra={
        "description": "What the bot should be; the operator and the bot's worker act on it."})

    server_name: str = Field(
        pattern=NAME_PATTERN, max_length=63, description=(
            "The tenant this bot serves. Immutable: the session and every row of tenant data "
            "are stored under it."),
        json_schema_extra=crd(rules=(cel("self == oldSelf", "serverName is immutable",
                                         reason="FieldValueForbidden"),)))
    # Immutable too, by a rule at the root (CRD_ROOT_RULES): its default is metadata.name.
    bot_id: str | None = Field(
        default=None, pattern=NAME_PATTERN, max_length=63, description=(
            "The bot's id inside its tenant; defaults to metadata.name. Immutable: the session "
            "lives in auth/{serverName}/bot_{botId}/ on the auth volume."))
    suspend: bool = Field(default=False, description=(
        "Stop the bot: the operator deletes its pod and keeps its auth volume, so the session "
        "survives and resumes when this is set back to false."))
    pairing: PairingSpec = Field(
        default_factory=PairingSpec, description="How the bot links to a phone the first time.",
        json_schema_extra=crd(rules=(cel(
            "!has(self.method) || self.method != 'code' || has(self.phoneNumber)",
            "phoneNumber is required when method is code",
            field_path=".phoneNumber", reason="FieldValueRequired"),)))
    commands: CommandsSpec = Field(default_factory=CommandsSpec,
                                   description="The commands the bot answers to.")
    settings: SettingsSpec = Field(default_factory=SettingsSpec,
                                   description="Per-bot behaviour, visible to every command.")
    features: dict[str, bool] = Field(
        default_factory=dict, max_length=64,
        description="Feature switches by name, read by commands and plugins.",
        json_schema_extra=crd(value="Whether the feature is on."))
    webhook: WebhookSpec | None = Field(default=None, description=(
        "Where the bot posts its events, each delivery signed with HMAC-SHA256 and retried "
        "with capped backoff (see the README, Receiving webhooks)."))
    rate_limit: RateLimitSpec = Field(
        default_factory=RateLimitSpec,
        description="Outgoing messages per minute; WhatsApp bans numbers that burst.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description=(
        "Compute resources of the bot's container. Changing them replaces the pod (the old one "
        "is gone before the new one starts)."))
    storage: StorageSpec = Field(default_factory=StorageSpec,
                                 description="The auth volume that holds the WhatsApp session.")
    image: str | None = Field(default=None, max_length=512, description=(
        "The worker image for this bot; the operator's default if unset (lets one bot run "
        "another version)."))
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64,
        description="Extra environment variables of the bot's container.",
        json_schema_extra=crd(
            item={"description": "One environment variable.",
                  "x-kubernetes-validations": [_RESERVED_ENV_RULE]},
            list_type="map", map_keys=("name",)))
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Node labels the bot's pod must run on.",
        json_schema_extra=crd(value="The label's value."))
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the bot's pod tolerates.",
        json_schema_extra=crd(item="A pod toleration.", list_type="atomic"))
    affinity: Affinity | None = Field(default=None, description=(
        "A core/v1 Affinity for the bot's pod (typed, so its depth is bounded)."))
    priority_class_name: str | None = Field(
        default=None, pattern=DNS_SUBDOMAIN_PATTERN, max_length=253,
        description="The PriorityClass of the bot's pod."
    )
    database: DatabaseSpec | None = Field(default=None, description=(
        "The tenant database; without it the operator's default DSN Secret is used, and "
        "without that the worker keeps SQLite on the auth volume."))
    proxy: ProxySpec | None = Field(default=None, description=(
        "A proxy for the WhatsApp connection. The URL (http://, https:// or socks5://, "
        "optionally with user:password@) is read from a Secret key and given to the worker as "
        "WABOT_PROXY_URL; a bad URL stops the bot with the condition Degraded=True, reason "
        "InvalidProxy. Changing the Secret's value takes effect when the pod is replaced."))

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
    method: Literal["qr", "code"] = Field(description="qr or code.")
    qr: str | None = Field(default=None, max_length=4096,
                           description="The QR payload to render and scan.")
    code: str | None = Field(default=None, max_length=64,
                             description="The pairing code to type on the phone.")
    expires_at: datetime | None = Field(
        default=None, description="When this QR payload or code stops working.")


class AccountStatus(_Model):
    jid: str = Field(max_length=256, description="The account's JID.")
    push_name: str | None = Field(default=None, max_length=256,
                                  description="The account's display name.")


CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class WorkerReport(_Model):
    """status.worker: written only by the bot's own worker, with a merge patch on this subtree."""

    state: WorkerState = Field(description="The WhatsApp session state the worker last saw.")
    pod_name: str | None = Field(default=None, max_length=253,
                                 description="The pod the report comes from.")
    pairing: PairingStatus | None = Field(
        default=None, description="The pairing in progress (never the session keys).")
    account: AccountStatus | None = Field(
        default=None, description="The linked WhatsApp account, once paired.")
    last_connected_at: datetime | None = Field(default=None,
                                               description="When the session last connected.")
    last_error: str | None = Field(default=None, max_length=1024,
                                   description="The last error the worker hit.")
    # Why the worker cannot go on, machine-readable (e.g. InvalidProxy): a problem of its
    # configuration that only a change by a human fixes. The operator turns it into a condition.
    error_reason: str | None = Field(
        default=None, pattern=CONDITION_REASON_PATTERN, max_length=64, description=(
            "Why the worker cannot go on, when a configuration problem stops it (e.g. "
            "InvalidProxy); the operator reports it as the Degraded condition.")
    )
    reconnects: int = Field(default=0, ge=0, description="Reconnects since the worker started.")
    updated_at: datetime = Field(description="When the worker wrote this report.")


class Condition(_Model):
    """KEP-1623 condition (the bounds are metav1.Condition's)."""

    type: str = Field(pattern=CONDITION_TYPE_PATTERN, max_length=316,
                      description="The aspect, in CamelCase.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(pattern=CONDITION_REASON_PATTERN, min_length=1, max_length=1024,
                        description="Why, in CamelCase, for machines.")
    message: str = Field(default="", max_length=32768, description="Why, for humans.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed from.",
        json_schema_extra=crd(fmt="int64"))


class WhatsAppBotStatus(_Model):
    """The whole status subresource. The operator writes every field but `worker`; the worker
    writes only `worker`. Each sends a merge patch of its own fields, so neither clobbers the
    other."""

    model_config = ConfigDict(json_schema_extra={"description": (
        "What the bot is. Two writers: the operator owns every field but worker; the bot's "
        "worker owns worker. Each merge-patches only its own fields.")})

    phase: Phase | None = Field(
        default=None, description="A one-word summary for display; use conditions in automation.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16,
        description="Ready, Paired, Connected, PodScheduled and Degraded.",
        json_schema_extra=crd(item="One aspect of the bot's state (KEP-1623).", list_type="map",
                              map_keys=("type",)))
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last acted on.",
        json_schema_extra=crd(fmt="int64"))
    pod_name: str | None = Field(default=None, max_length=253, description="The bot's pod.")
    restarts: int = Field(default=0, ge=0, description="Container restarts of the current pod.")
    worker: WorkerReport | None = Field(default=None, description=(
        "Written by the bot's worker only; what it sees of its session."))


# --- the CRD's parts outside spec and status (wabot/crd.py puts them around the models) -----

CRD_DESCRIPTION = (
    "WhatsAppBot runs one WhatsApp account as one pod. The operator owns the pod, its auth "
    "volume, a least-privilege ServiceAccount and a Lease that fences the session so that two "
    "clients never share it.")

# At the root because botId's default is metadata.name: writing the default out is no change.
CRD_ROOT_RULES: tuple[JsonDict, ...] = (cel(
    "(has(self.spec.botId) ? self.spec.botId : self.metadata.name) == "
    "(has(oldSelf.spec.botId) ? oldSelf.spec.botId : oldSelf.metadata.name)",
    "botId is immutable (the WhatsApp session is stored under it); it defaults to "
    "metadata.name, which may be written out",
    field_path=".spec.botId", reason="FieldValueForbidden"),)


def _column(name: str, type_: str, json_path: str, description: str | None = None,
            wide: bool = False) -> JsonDict:
    out: JsonDict = {"name": name, "type": type_}
    if description is not None:
        out["description"] = description
    out["jsonPath"] = json_path
    if wide:
        out["priority"] = 1
    return out


# `kubectl get whatsappbots`; the wide ones (-o wide) are what someone on call looks at next.
PRINTER_COLUMNS: tuple[JsonDict, ...] = (
    _column("Server", "string", ".spec.serverName",
            "The tenant (serverName) the bot belongs to."),
    _column("Phase", "string", ".status.phase", "Where the bot is in its life cycle."),
    _column("Account", "string", ".status.worker.account.jid",
            "The WhatsApp account (JID) the bot is linked to."),
    _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status',
            "Status of the Ready condition."),
    _column("Age", "date", ".metadata.creationTimestamp"),
    _column("Pod", "string", ".status.podName", "The bot's pod.", wide=True),
    _column("Restarts", "integer", ".status.restarts",
            "Times the operator replaced the bot's pod.", wide=True),
    _column("Last-Connected", "date", ".status.worker.lastConnectedAt",
            "When the worker last connected to WhatsApp.", wide=True),
    _column("Problem", "string", '.status.conditions[?(@.type=="Degraded")].reason',
            "The Degraded condition's reason (AsExpected when there is none).", wide=True),
)
