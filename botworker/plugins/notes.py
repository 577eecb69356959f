"""`note`: a tenant's shared memo, kept in the tenant-scoped key-value table.

    !note <key> <text...>   save
    !note <key>             read

It is also the reference for a plugin that needs the database: it opens `ctx.db()`, which is
already confined to the bot's tenant, and lets `DatabaseUnavailable` propagate so the user gets
"try again later" while the database is down.
"""

from __future__ import annotations

from botworker.core.context import CommandContext
from botworker.core.registry import CommandRegistry

SCOPE = "notes"


def _note(ctx: CommandContext) -> str:
    from botworker.data.kv import kv_get, kv_set

    if not ctx.args:
        return f"Usage: {ctx.prefix}note <key> [text]"
    key = ctx.args[0][:128]
    with ctx.db() as session:
        if len(ctx.args) == 1:
            value = kv_get(session, SCOPE, key)
            return value if value is not None else f"No note called {key!r}."
        kv_set(session, SCOPE, key, " ".join(ctx.args[1:])[:4096])
    return f"Saved note {key!r}."


def register(registry: CommandRegistry) -> None:
    registry.command("note", _note, description="save or read a note: note <key> [text]")
