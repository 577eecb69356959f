"""The bot's API-token Secret, without its data: the token is random, so the apply layer
(apply.py) adds it when it creates the Secret, and never changes it afterwards."""

from __future__ import annotations

from typing import Any

from wabot import naming
from wabot.spec import WhatsAppBotSpec
from wabot_operator.specs.bot import BotRef, with_metadata


def render_api_secret(bot: BotRef, spec: WhatsAppBotSpec) -> dict[str, Any]:
    """`wabot-N-api`: the token the gateway presents to this bot's worker (the worker gets it
    as WABOT_API_TOKEN). Owned by the bot, so it goes with it."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque"}
    return with_metadata(doc, naming.api_secret_name(bot.name), bot, spec, owned=True)
