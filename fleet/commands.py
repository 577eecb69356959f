"""The one table of the fleet's commands: `python -m fleet NAME` runs them, and the `wabot`
command (wabot_cli) runs the two that are also roles of the image, `monolith` and
`controller`, from this same table (ROLES) rather than a list of its own. Each command's
module is imported only when it runs: the table costs a caller nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

USAGE = """`python -m fleet COMMAND`: the tiers' tools.

  monolith    run every bot of a bots file (same as `ROLE=monolith wabot`)
  controller  run the bots in N worker groups behind an API (same as `ROLE=controller wabot`)
  compose     generate docker-compose.yml from a bots file
  migrate     turn a monolith's bots file and auth dirs into manifests and PVC restore kits
  db-import   copy a bots file into the bot_definition table at $WABOT_BOTS_DSN
"""

Command = Callable[[list[str]], int]


def _monolith(argv: list[str]) -> int:
    from .monolith import run

    return run(argv)


def _controller(argv: list[str]) -> int:
    from .controller import run

    return run(argv)


def _compose(argv: list[str]) -> int:
    from .compose import run

    return run(argv)


def _migrate(argv: list[str]) -> int:
    from .migrate import run

    return run(argv)


def _db_import(argv: list[str]) -> int:
    from .botsdb import run_import

    return run_import(argv)


COMMANDS: dict[str, Command] = {
    "monolith": _monolith,
    "controller": _controller,
    "compose": _compose,
    "migrate": _migrate,
    "db-import": _db_import,
}
# The commands that are also a ROLE of the image (wabot_cli runs these from here).
ROLES: tuple[str, ...] = ("monolith", "controller")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:])
