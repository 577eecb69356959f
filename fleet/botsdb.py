"""Bot definitions kept in a database (`WABOT_BOTS_DSN`), for teams whose admin tool writes
bots to a table instead of a file.

One row per bot: `bot_definition(name, server_name, spec JSON, updated_at)`. The spec column
holds the same camelCase object as a WhatsAppBot's `spec` and is validated by the same models
as the bots file, so a row a human typed by hand fails with the row's name and the field path.
`server_name` is a column of its own (tenant queries and an index need it); when the spec also
names a tenant the two must agree.

The table lives in a metadata registry of its own so it never joins the worker's tenant schema
(and its Alembic migrations) when both are imported into one process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, create_engine, select

from wabot.settings import check_dsn
from wabot.spec import WhatsAppBotSpec

from .botsfile import (
    BotDefinition,
    BotsFileError,
    _explain,
    check_unique,
    load_bots_file,
    valid_name,
)

TABLE = "bot_definition"


class _Base(SQLModel, registry=registry()):
    pass


class BotDefinitionRow(_Base, table=True):
    __tablename__ = TABLE

    name: str = Field(primary_key=True, max_length=52)
    server_name: str = Field(index=True, max_length=63)
    spec: dict[str, Any] = Field(
        sa_column=Column(JSON().with_variant(JSONB(), "postgresql"), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=lambda: datetime.now(UTC),
        sa_column=Column(DateTime(timezone=True), nullable=False),
    )


def normalize_url(url: str) -> str:
    """postgres:// and postgresql:// DSNs (as operators write them) use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_for(dsn: str) -> Engine:
    return create_engine(normalize_url(dsn), pool_pre_ping=True)


def create_table(engine: Engine) -> None:
    _Base.metadata.create_all(engine)


def row_to_bot(row: BotDefinitionRow, source: str) -> BotDefinition:
    where = f"row {row.name!r}"
    if not valid_name(row.name):
        raise BotsFileError(f"{source}: {where}: name is not a valid bot name")
    raw = dict(row.spec)
    named = raw.setdefault("serverName", row.server_name)
    if named != row.server_name:
        raise BotsFileError(
            f"{source}: {where}: spec.serverName {named!r} differs from the row's "
            f"server_name {row.server_name!r}"
        )
    try:
        spec = WhatsAppBotSpec.model_validate(raw)
    except ValidationError as exc:
        raise _explain(source, where, exc, ("spec",)) from None
    return BotDefinition(name=row.name, spec=spec)


def load_bots_from_db(engine: Engine, source: str = "database") -> list[BotDefinition]:
    with Session(engine) as session:
        rows = session.exec(select(BotDefinitionRow).order_by(BotDefinitionRow.name)).all()
        bots = [row_to_bot(r, source) for r in rows]
    check_unique(bots, source)
    return bots


def store_bots(engine: Engine, bots: Iterable[BotDefinition]) -> int:
    """Insert or replace these bots (by name); used by `python -m fleet db-import`."""
    count = 0
    with Session(engine) as session:
        for bot in bots:
            row = session.get(BotDefinitionRow, bot.name)
            spec = bot.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
            if row is None:
                row = BotDefinitionRow(name=bot.name, server_name=bot.server_name, spec=spec)
            else:
                row.server_name = bot.server_name
                row.spec = spec
                row.updated_at = datetime.now(UTC)
            session.add(row)
            count += 1
        session.commit()
    return count


def run_import(argv: Sequence[str] | None = None) -> int:
    """`python -m fleet db-import`: a bots file into the table, for a team moving its bots
    from a file to its admin tool's database."""
    p = argparse.ArgumentParser(prog="python -m fleet db-import", description=(
        "Insert or replace the bots of a bots file in the bot_definition table."))
    p.add_argument("--bots", type=Path, required=True)
    p.add_argument("--dsn", default=os.environ.get("WABOT_BOTS_DSN"),
                   help="default: $WABOT_BOTS_DSN")
    args = p.parse_args(list(argv or []))
    if not args.dsn:
        print("db-import: set WABOT_BOTS_DSN or --dsn", file=sys.stderr)
        return 2
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
