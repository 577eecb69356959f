"""The bot's Lease: at most one worker holds it, so at most one pod speaks for the bot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wabot import naming
from wabot.spec import WhatsAppBotSpec
from wabot_operator.specs.bot import BotRef, with_metadata
from wabot_operator.templates import Templates


def render_lease(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                 values: Mapping[str, str]) -> dict[str, Any]:
    """Created without a holder: the worker acquires it; the operator never touches spec."""
    doc = templates.render("lease.yaml", values)
    doc.setdefault("spec", {})
    return with_metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)
