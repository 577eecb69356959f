"""The WhatsAppBot spec as typed models: the one contract shared by the operator, the worker,
the monolith's bots file and the Compose generator (the status is in wabot/status.py, the pod
placement types in wabot/placement.py, both re-exported here; the chat commands, spec.commands,
in wabot/bot_commands.py).

Field names are the CRD's camelCase names (aliases); Python code uses snake_case. Unknown
fields are refused here, because the bots file of the non-Kubernetes tiers has no API server
to prune them: a typo must be an error, not a silently ignored setting. `crds/` holds the same
shape as an OpenAPI schema, generated from these models by wabot/crd.py: what only the CRD
uses (descriptions for `kubectl explain`, CEL rules, list types, printer columns) sits on the
fields themselves, as `Field(description=...)` and `json_schema_extra=crd(...)`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from wabot import workerenv
from wabot.bot_commands import CommandsSpec
from wabot.contract import SpecModel, cel, crd
from wabot.naming import API_GROUP  # the names' root; importable from here as before
from wabot.placement import (
    Affinity,
    LabelSelector,
    LabelSelectorRequirement,
    LabelValue,
    NodeAffinity,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodAffinity,
    PodAffinityTerm,
    PreferredSchedulingTerm,
    Toleration,
    WeightedPodAffinityTerm,
)
from wabot.status import (
    CONDITION_REASON_PATTERN,
    CONDITION_TYPE_PATTERN,
    PRINTER_COLUMNS,
    AccountStatus,
    Condition,
    PairingStatus,
    Phase,
    WhatsAppBotStatus,
    WorkerReport,
    WorkerState,
)

# What wabot/status.py, wabot/placement.py and wabot/contract.py define, importable from here as
# when the contract was one file (listed for mypy; this module's own names are public anyway).
__all__ = [
    "API_GROUP", "CONDITION_REASON_PATTERN", "CONDITION_TYPE_PATTERN", "PRINTER_COLUMNS",
    "AccountStatus",
    "Affinity", "Condition", "LabelSelector", "LabelSelectorRequirement", "LabelValue",
    "NodeAffinity", "NodeSelector", "NodeSelectorRequirement", "NodeSelectorTerm",
    "PairingStatus", "Phase", "PodAffinity", "PodAffinityTerm", "PreferredSchedulingTerm",
    "Toleration", "WeightedPodAffinityTerm", "WhatsAppBotStatus", "WorkerReport",
    "WorkerState", "crd",
]

API_VERSION = "v1alpha1"
KIND = "WhatsAppBot"
PLURAL = "whatsappbots"

# Names used in fields, labels and the auth layout must stay valid DNS labels once prefixed.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PHONE_PATTERN = r"^[1-9][0-9]{6,14}$"  # E.164 digits, no '+'
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
# Subdomain-style names of cluster objects (PriorityClass, StorageClass).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class SecretKeyRef(SpecModel):
    """A key of a Secret in the bot's own namespace; only its name ever appears in status."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="The Secret's name.")
    key: str = Field(default="value", min_length=1, max_length=253,
                     description="The key inside the Secret.")


class PairingSpec(SpecModel):
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


class SettingsSpec(SpecModel):
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


WebhookEvent = Literal["message", "command", "connection", "pairing", "message.reaction",
                       "message.edited", "message.revoked", "poll.vote",
                       # the account's events (issue 25)
                       "message.ack", "presence.update", "group.join", "group.leave",
                       "group.update", "call", "session.status"]


def _default_webhook_events() -> list[WebhookEvent]:
    return ["message"]


class WebhookSpec(SpecModel):
    """Signed deliveries of the bot's events (botworker/adapters/webhooks.py). The signing key is
    required: a receiver must be able to tell wabot's deliveries from anyone else's."""

    url: str = Field(pattern=r"^https?://", max_length=2048,
                     description="The http(s) URL that receives the deliveries.")
    secret_ref: SecretKeyRef = Field(description=(
        "The Secret (in the bot's namespace) whose key signs the deliveries (given to the "
        "worker as WABOT_WEBHOOK_SECRET; never written to status)."))
    events: list[WebhookEvent] = Field(
        default_factory=_default_webhook_events, max_length=15,
        description="Which events are delivered.", json_schema_extra=crd(item="An event type."))


class ProxySpec(SpecModel):
    """The proxy the WhatsApp connection goes through (http://, https:// or socks5://, with
    optional credentials). The URL is a secret: it comes from a Secret key, never the spec."""

    secret_ref: SecretKeyRef = Field(description="The Secret key holding the proxy URL.")


class RateLimitSpec(SpecModel):
    """Outgoing messages per minute; WhatsApp bans numbers that burst."""

    per_chat_per_minute: int = Field(default=20, ge=1, le=600,
                                     description="Most messages per minute to one chat.")
    per_bot_per_minute: int = Field(default=60, ge=1, le=6000,
                                    description="Most messages per minute from the whole bot.")


MIB = 1024 * 1024


class MediaSpec(SpecModel):
    """Incoming media (images, video, audio, voice notes, documents, stickers): what the bot
    downloads and keeps on its own volume (botworker/adapters/media_store.py), and for how
    long. Off by default: a download costs bandwidth, memory (a file is held whole while it is
    checked) and the volume that also holds the session, and a received file is personal data
    the tenant has to want."""

    download: Literal["none", "metadata", "full"] = Field(default="metadata", description=(
        "none: events say the message type and caption only; metadata: events also describe "
        "the file as the message declares it (type, size, SHA-256, duration, dimensions); "
        "full: files up to maxBytes are downloaded, checked against that declaration, kept on "
        "the bot's volume and fetchable at the URL the event gives."))
    max_bytes: int = Field(default=16 * MIB, ge=1024, le=64 * MIB, description=(
        "Largest file downloaded, in bytes (larger ones are described, not downloaded)."))
    quota_bytes: int = Field(default=64 * MIB, ge=MIB, le=1024 * 1024 * MIB, description=(
        "Most bytes of media kept on the volume; the oldest files go first to make room."))
    retention_hours: int = Field(default=168, ge=1, le=8760, description=(
        "Files older than this are deleted."))


class ResourceList(SpecModel):
    """Its fields' descriptions are on ResourcesSpec's: they name each side's built-in default."""

    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)


def _overlay(over: ResourceList, under: ResourceList) -> ResourceList:
    return ResourceList(cpu=over.cpu or under.cpu, memory=over.memory or under.memory)


class ResourcesSpec(SpecModel):
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
            "500m, memory 240Mi)."),
        json_schema_extra=crd(properties={"cpu": "CPU quantity, for example 500m.",
                                          "memory": "Memory quantity, for example 240Mi."}))

    def over(self, defaults: ResourcesSpec) -> ResourcesSpec:
        """This spec with each unset key taken from `defaults`."""
        return ResourcesSpec(requests=_overlay(self.requests, defaults.requests),
                             limits=_overlay(self.limits, defaults.limits))


# The built-in defaults: an idle worker measures ~90 MB RSS (bench/), so 96Mi is reserved. The
# limit is what handling files takes: a worker's cgroup peaked at 201 MiB sending 16-32 MiB
# files one after another, 48 MiB of them at once (its media budget's most:
# runtime/media_source.py), 77 MiB at start (the start-up child); 240Mi is that plus ~20%.
# Taking in a 64 MiB file after them (spec.media.maxBytes' most) peaked at 224 MiB, its page
# cache included, and ran under 240Mi without an OOM kill (`python -m bench.upload_peak`,
# docs/benchmarks/worker.md "Upload peak", tests/worker/test_upload_memory.py).
DEFAULT_RESOURCES = ResourcesSpec(requests=ResourceList(cpu="50m", memory="96Mi"),
                                  limits=ResourceList(cpu="500m", memory="240Mi"))
DEFAULT_STORAGE_SIZE = "256Mi"


class StorageSpec(SpecModel):
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


class DatabaseSpec(SpecModel):
    secret_ref: SecretKeyRef = Field(description="The Secret key holding the DSN (DATABASE_URL).")


# The worker's environment contract (docs/design.md): set by whoever starts the worker, never
# by a bot's own `env` (a bot must not rename itself, move its session or switch its role).
# Reserved names the admin sets for every bot of a tier, which is why the fleet tiers pass the
# supervisor's own value down to each worker (fleet/workers.py) instead of dropping it: the
# webhook egress exceptions (wabot/egress.py); a bot's own env setting them would let its
# tenant open the cluster's internal addresses to its webhook.
ADMIN_ENV_NAMES: tuple[str, ...] = (
    workerenv.ALLOW_CIDRS_ENV, workerenv.ALLOW_HOSTS_ENV, workerenv.DENY_CIDRS_ENV)
RESERVED_ENV_NAMES: tuple[str, ...] = (
    workerenv.ROLE, workerenv.BOT_ID, workerenv.SERVER_NAME, workerenv.BOT_NAME,
    workerenv.NAMESPACE, workerenv.POD_NAME, workerenv.LEASE_NAME, workerenv.AUTH_DIR,
    workerenv.DATABASE_URL, workerenv.HTTP_PORT, workerenv.SPEC_SOURCE,
    workerenv.WEBHOOK_SECRET, workerenv.API_TOKEN, workerenv.PROXY_URL, *ADMIN_ENV_NAMES,
)

class EnvVar(SpecModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128,
                      description="The variable's name.")
    value: str = Field(default="", max_length=8192, description="The variable's value.")

    @model_validator(mode="after")
    def _not_reserved(self) -> EnvVar:
        if self.name in RESERVED_ENV_NAMES:
            raise ValueError(f"env {self.name} is set by wabot itself and cannot be overridden")
        return self


_RESERVED_ENV_RULE = cel(
    "!(self.name in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV_NAMES) + "])",
    "this variable is set by wabot itself and cannot be overridden",
    field_path=".name", reason="FieldValueForbidden")


class WhatsAppBotSpec(SpecModel):
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
    media: MediaSpec = Field(default_factory=MediaSpec, description=(
        "Incoming media: what is downloaded, how much is kept, for how long (README, "
        "Messages)."))
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
