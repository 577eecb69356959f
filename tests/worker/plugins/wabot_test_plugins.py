"""Plugins used by the worker tests, loaded through real `wabot.plugins` entry points."""

from __future__ import annotations

from botworker.core.context import CommandContext
from botworker.core.registry import CommandRegistry


def _echo(ctx: CommandContext) -> str:
    return "args=" + "|".join(ctx.args)


def register_echo(registry: CommandRegistry) -> None:
    registry.command("echo", _echo, description="repeat the arguments", aliases=["say"])


def _boom(ctx: CommandContext) -> str:
    raise RuntimeError("the plugin blew up")


def register_boom(registry: CommandRegistry) -> None:
    registry.command("boom", _boom, description="always fails")


def register_broken(registry: CommandRegistry) -> None:
    registry.command("half", _echo)
    raise ImportError("missing dependency of the broken plugin")


def _context(ctx: CommandContext) -> str:
    return (
        f"bot={ctx.bot_id} tenant={ctx.tenant} chat={ctx.chat} "
        f"groups={ctx.settings.ignore_groups} beta={ctx.feature('beta')}"
    )


def register_context(registry: CommandRegistry) -> None:
    registry.command("ctx", _context)
