"""The WhatsAppBot status: what the operator and the bot's worker report, and the columns
`kubectl get` shows of it.

Lax, unlike the spec: these models read enum values and timestamps from JSON strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from wabot.contract import Model, crd
from wabot.states import Phase as Phase  # pydantic-free for the worker; the same objects
from wabot.states import WorkerState as WorkerState

# What a person calls the bot's state, from what its worker last saw (the operator's
# status.phase, and the fleet tiers' console, which have no operator).
WORKER_PHASES: Mapping[WorkerState, Phase] = {
    WorkerState.STARTING: Phase.CONNECTING,
    WorkerState.PAIRING: Phase.PAIRING,
    WorkerState.CONNECTING: Phase.CONNECTING,
    WorkerState.CONNECTED: Phase.CONNECTED,
    WorkerState.DISCONNECTED: Phase.DISCONNECTED,
    WorkerState.LOGGED_OUT: Phase.LOGGED_OUT,
    WorkerState.STREAM_REPLACED: Phase.DISCONNECTED,
    WorkerState.TEMPORARY_BAN: Phase.DISCONNECTED,
    WorkerState.STOPPED: Phase.DISCONNECTED,
}


class PairingStatus(Model):
    method: Literal["qr", "code"] = Field(description="qr or code.")
    qr: str | None = Field(default=None, max_length=4096,
                           description="The QR payload to render and scan.")
    code: str | None = Field(default=None, max_length=64,
                             description="The pairing code to type on the phone.")
    expires_at: datetime | None = Field(
        default=None, description="When this QR payload or code stops working.")


class AccountStatus(Model):
    jid: str = Field(max_length=256, description="The account's JID.")
    push_name: str | None = Field(default=None, max_length=256,
                                  description="The account's display name.")


SessionAction = Literal["logout", "restart", "pairing"]
SessionActionResult = Literal["Started", "Succeeded", "Failed", "Rejected"]


class SessionActionStatus(Model):
    """The last session action (log out, restart, new pairing) the worker was asked for, from
    the API or the `wabot.io/session-action` annotation, and how it went. Its request id is
    what makes an annotation act exactly once."""

    request_id: str = Field(max_length=255, description="The request's id (annotation "
                            "wabot.io/session-action-id, or the API's Idempotency-Key).")
    action: SessionAction = Field(description="logout, restart or pairing.")
    source: Literal["api", "kubernetes"] = Field(description="Who asked: api or kubernetes.")
    result: SessionActionResult = Field(description="Started, Succeeded, Failed or Rejected.")
    message: str | None = Field(default=None, max_length=1024, description="What happened.")
    at: datetime | None = Field(default=None, description="When the result was reached.")


CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class MediaStorageStatus(Model):
    """The received media the worker keeps on the bot's volume (spec.media)."""

    used_bytes: int = Field(ge=0, description="Bytes of media kept.")
    files: int = Field(ge=0, description="Files kept.")
    quota_bytes: int = Field(ge=0, description="spec.media.quotaBytes when last written.")
    full: bool = Field(description=(
        "True while new files cannot be kept (the volume or the quota is full): messages are "
        "still delivered, without their file; the operator reports Degraded=True."))
    reason: str | None = Field(default=None, pattern=CONDITION_REASON_PATTERN, max_length=64,
                               description="VolumeFull, QuotaFull or WriteFailed.")


class WebhookDeliveryStatus(Model):
    """The bot's webhook deliveries as its worker last saw them (never the URL, the key or a
    body: the failure is an HTTP status or "unreachable")."""

    queue_depth: int = Field(ge=0, description=(
        "Events waiting or being retried in the worker's durable webhook queue."))
    failing: bool = Field(description="True while the oldest event keeps failing to deliver.")
    failing_since: datetime | None = Field(
        default=None, description="The first failure after the last successful delivery.")
    last_delivered_at: datetime | None = Field(
        default=None, description="When an event was last delivered (2xx).")
    last_failed_at: datetime | None = Field(default=None,
                                            description="When a delivery last failed.")
    last_failure: str | None = Field(default=None, max_length=64, description=(
        "Why it last failed: the receiver's HTTP status (e.g. HTTP 503), unreachable, or "
        "no signing key."))


class ActivityStatus(Model):
    """What the bot did lately, written at most once a minute and only when it changed (never
    once per message). The counts are this process's last hour: they start from zero when the
    worker restarts (`since`)."""

    messages_in_last_hour: int = Field(ge=0, description=(
        "Messages received over the last hour (wabot_messages_received_total's last hour)."))
    messages_out_last_hour: int = Field(ge=0, description=(
        "Messages sent over the last hour (wabot_messages_sent_total's last hour)."))
    since: datetime = Field(description=(
        "When this worker started counting: the counts cover the last hour or since then."))
    webhook: WebhookDeliveryStatus | None = Field(
        default=None, description="Webhook delivery, when spec.webhook is set.")


class WorkerReport(Model):
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
    session_action: SessionActionStatus | None = Field(
        default=None, description="The last session action asked of the worker and its outcome.")
    media: MediaStorageStatus | None = Field(
        default=None, description="Received media kept on the volume, when spec.media keeps any.")
    activity: ActivityStatus | None = Field(
        default=None, description="Messages in/out over the last hour and webhook delivery.")
    updated_at: datetime = Field(description="When the worker wrote this report.")


class Condition(Model):
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


class WhatsAppBotStatus(Model):
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
            "Container restarts of the bot's current pod.", wide=True),
    _column("Last-Connected", "date", ".status.worker.lastConnectedAt",
            "When the worker last connected to WhatsApp.", wide=True),
    _column("Problem", "string", '.status.conditions[?(@.type=="Degraded")].reason',
            "The Degraded condition's reason (AsExpected when there is none).", wide=True),
)
