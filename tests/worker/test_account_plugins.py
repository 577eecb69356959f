"""A plugin manages the bot's groups through `ctx.account`: the same operations, checks, rate
limits and metrics as the API, on the plugin's own bot only (the context is built per bot)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint

from botworker.core.context import CommandContext
from botworker.core.registry import CommandRegistry
from wabot.account import AccountError
from wabot.spec import WhatsAppBotSpec

from .account_client import AccountHarness, make_account_worker
from .test_account_api import ALICE, CAROL, G, world

__all__ = ["make_account_worker"]
Make = Callable[..., AccountHarness]


def _groups(ctx: CommandContext) -> str:
    return ", ".join(sorted(g.name for g in ctx.account.groups()))


def _kick(ctx: CommandContext) -> str:
    """!kick <number>: remove someone from the group the command was sent in."""
    try:
        done = ctx.account.participants(ctx.chat, "remove", list(ctx.args))
    except AccountError as exc:
        return f"{exc.code}: {exc.message}"
    return " ".join(f"{p.jid.split('@')[0]}={p.status}" for p in done)


def _who(ctx: CommandContext) -> str:
    found = ctx.account.on_whatsapp(list(ctx.args))
    return " ".join(f"{r.number}={'yes' if r.on_whatsapp else 'no'}" for r in found)


def _slow(ctx: CommandContext) -> str:
    ctx.account.chat_presence(ctx.chat, "composing")
    return "done"


def register(registry: CommandRegistry) -> None:
    registry.command("slow", _slow)
    registry.command("groups", _groups)
    registry.command("kick", _kick)
    registry.command("who", _who)


def test_a_plugin_manages_groups_through_its_context(make_account_worker: Make) -> None:
    eps = [EntryPoint("admin", f"{__name__}:register", "wabot.plugins")]
    spec = WhatsAppBotSpec.model_validate({"serverName": "tenant-a", "botId": "bot-a",
                                           "settings": {"ignoreGroups": False},
                                           "commands": {"plugins": ["admin"]}})
    h = make_account_worker(spec, plugins_available=eps, world=world())
    h.worker.connection.events.own_user = "4915100000001"
    assert h.ask("!groups") == "Member only, Team"
    assert h.ask(f"!kick {ALICE}", chat=G, sender=CAROL, group=True) == f"{ALICE}=ok"
    assert ALICE not in h.world.groups[G].participants
    # Where the bot is not an admin: the same refusal the API gives.
    answer = h.ask(f"!kick {CAROL}", chat="120363000000000088", sender=CAROL, group=True)
    assert answer == "not_an_admin: the bot is not an admin of this group"
    assert h.ask(f"!who {CAROL} 15550009999") == f"{CAROL}=yes 15550009999=no"
    assert h.metric("wabot_account_operations_total", operation="group_remove",
                    result="not_an_admin") == 1
    assert h.ask("!slow", chat=G, sender=CAROL, group=True) == "done"
    assert h.world.called("send_chat_presence") == [
        ("send_chat_presence", G, "CHAT_PRESENCE_COMPOSING", "CHAT_PRESENCE_MEDIA_TEXT")]
