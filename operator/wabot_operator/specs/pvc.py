"""The bot's auth volume: the WhatsApp session lives on it, so it outlives the pod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wabot import naming
from wabot.spec import WhatsAppBotSpec
from wabot_operator.specs.bot import BotRef, RenderDefaults, with_metadata
from wabot_operator.templates import Templates


def render_pvc(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
               values: Mapping[str, str], defaults: RenderDefaults) -> dict[str, Any]:
    """With retainPolicy Retain the PVC has no owner: neither the garbage collector nor a
    `kubectl delete --cascade` of the bot can take the session with it."""
    doc = templates.render("pvc.yaml", values)
    with_metadata(doc, naming.pvc_name(bot.name), bot, spec,
                  owned=spec.storage.retain_policy == "Delete")
    body = doc.setdefault("spec", {})
    size = spec.storage.size or defaults.storage_size
    body.setdefault("resources", {}).setdefault("requests", {})["storage"] = size
    storage_class = spec.storage.storage_class_name or defaults.storage_class
    if storage_class is not None:
        body["storageClassName"] = storage_class
    return doc
