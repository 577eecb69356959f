"""What every builder takes: the bot's identity, the operator's defaults, the values the
templates are filled with, and the metadata every child of a bot carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wabot import naming
from wabot.spec import (
    API_GROUP,
    API_VERSION,
    DEFAULT_RESOURCES,
    DEFAULT_STORAGE_SIZE,
    KIND,
    ResourcesSpec,
    SecretKeyRef,
    WhatsAppBotSpec,
)


@dataclass(frozen=True)
class BotRef:
    """The identity of one WhatsAppBot object."""

    name: str
    namespace: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class RenderDefaults:
    """What the operator supplies when a spec leaves it open."""

    worker_image: str
    database_secret: SecretKeyRef | None = None
    # The send-message gateway's ServiceAccount: when set, each bot gets a Role and RoleBinding
    # that let exactly that ServiceAccount read exactly this bot's API-token Secret.
    gateway_service_account: ServiceAccountRef | None = None
    resources: ResourcesSpec = DEFAULT_RESOURCES
    storage_size: str = DEFAULT_STORAGE_SIZE
    storage_class: str | None = None
    # The admin's settings for every worker (OperatorConfig.worker_env), e.g. webhook egress.
    worker_env: tuple[tuple[str, str], ...] = ()


def template_values(bot: BotRef, spec: WhatsAppBotSpec, defaults: RenderDefaults) -> dict[str, str]:
    child = naming.child_name(bot.name)
    return {
        "bot": bot.name,
        "namespace": bot.namespace,
        "childName": child,
        "pvcName": naming.pvc_name(bot.name),
        "leaseName": child,
        "serverName": spec.server_name,
        "botId": spec.effective_bot_id(bot.name),
        "image": spec.image or defaults.worker_image,
        "storageSize": spec.storage.size or defaults.storage_size,
    }


def with_metadata(doc: dict[str, Any], name: str, bot: BotRef, spec: WhatsAppBotSpec,
                  owned: bool) -> dict[str, Any]:
    """`doc` named `name` in the bot's namespace, with the bot's labels over the template's,
    and owned by the bot (or explicitly not: a template's owner reference is dropped)."""
    meta = dict(doc.get("metadata") or {})
    meta["name"] = name
    meta["namespace"] = bot.namespace
    meta["labels"] = {**(meta.get("labels") or {}),
                      **naming.bot_labels(bot.name, spec.server_name)}
    if owned:
        meta["ownerReferences"] = [bot.owner_reference()]
    else:
        meta.pop("ownerReferences", None)
    doc["metadata"] = meta
    return doc
