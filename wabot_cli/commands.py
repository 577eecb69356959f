"""The `wabot` command: one image, one entry point, the role picked by `ROLE` (as in the seed).

`worker` runs one bot (BOT_ID required), `operator` runs the Kubernetes operator, `monolith`
runs many bots from a bots file or the database (one OS process per bot: neonize cannot host
several clients in one process) and `controller` runs them in N worker-group processes behind
a token-protected API, and `gateway` serves the send-message API (gateway/). `wabot db ...`
is the database's owner-side command (migrations, tenant roles: botworker/data/migrate.py).
A bad setting of any role is one line on stderr and exit code 2 (wabot.settings).
As in the seed, `monolith` is the default when ROLE is unset. Each role's package is imported
only when chosen, so a worker never pays for kopf and an operator never loads neonize.

This package stands above every tier (it is the only one that imports them all); `COMMANDS` is
the table of what `wabot NAME` runs, the fleet's roles taken from the fleet's own table.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from fleet import commands as fleet_commands

Command = Callable[[list[str]], int]


def _worker(argv: list[str]) -> int:
    from botworker.main import run

    return run(argv)


def _operator(argv: list[str]) -> int:
    from wabot_operator.main import run

    return run(argv)


def _gateway(argv: list[str]) -> int:
    from gateway.main import run

    return run(argv)


def _db(argv: list[str]) -> int:
    from botworker.data.migrate import main as db_main

    return db_main(argv)


# `monolith` and `controller` come from the fleet's own table (fleet/commands.py), the same
# entries `python -m fleet` runs: one table per tier, this one on top of them.
COMMANDS: dict[str, Command] = {
    "worker": _worker,
    "operator": _operator,
    **{role: fleet_commands.COMMANDS[role] for role in fleet_commands.ROLES},
    "gateway": _gateway,
    "db": _db,
}
ROLES = tuple(name for name in COMMANDS if name != "db")
DEFAULT_ROLE = "monolith"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    role = os.environ.get("ROLE") or os.environ.get("DEPLOYMENT_ROLE") or DEFAULT_ROLE
    if args and args[0] in COMMANDS:
        role = args.pop(0)
    if role not in COMMANDS:
        print(f"wabot: ROLE={role} is not one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    from wabot.envcheck import ConfigError  # the same class wabot.settings exports; no pydantic

    try:
        return COMMANDS[role](args)
    except ConfigError as exc:
        # Every role reads its settings into a validated config before anything else runs
        # (wabot.settings); one that still escapes is a setting too: one line, exit code 2,
        # as each role reports its own.
        print(f"wabot {role}: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
