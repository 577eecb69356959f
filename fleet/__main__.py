"""`python -m fleet COMMAND`: the tiers' tools.

  monolith    run every bot of a bots file (same as `ROLE=monolith wabot`)
  controller  run the bots in N worker groups behind an API (same as `ROLE=controller wabot`)
  compose     generate docker-compose.yml from a bots file
  migrate     turn a monolith's bots file and auth dirs into manifests and PVC restore kits
  db-import   copy a bots file into the bot_definition table at $WABOT_BOTS_DSN
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


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
    import argparse
    import os
    from pathlib import Path

    from .botsdb import create_table, engine_for, store_bots
    from .botsfile import BotsFileError, load_bots_file

    p = argparse.ArgumentParser(prog="python -m fleet db-import", description=(
        "Insert or replace the bots of a bots file in the bot_definition table."))
    p.add_argument("--bots", type=Path, required=True)
    p.add_argument("--dsn", default=os.environ.get("WABOT_BOTS_DSN"),
                   help="default: $WABOT_BOTS_DSN")
    args = p.parse_args(argv)
    if not args.dsn:
        print("db-import: set WABOT_BOTS_DSN or --dsn", file=sys.stderr)
        return 2
    from wabot.settings import check_dsn

    try:
        check_dsn(args.dsn)
    except ValueError as exc:
        print(f"db-import: WABOT_BOTS_DSN (or --dsn): {exc}", file=sys.stderr)
        return 2
    try:
        bots = load_bots_file(args.bots)
    except BotsFileError as exc:
        print(f"db-import: {exc}", file=sys.stderr)
        return 2
    engine = engine_for(args.dsn)
    try:
        create_table(engine)
        n = store_bots(engine, bots)
    finally:
        engine.dispose()
    print(f"db-import: {n} bots stored")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "monolith": _monolith,
    "controller": _controller,
    "compose": _compose,
    "migrate": _migrate,
    "db-import": _db_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
