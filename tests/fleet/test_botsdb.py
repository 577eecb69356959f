"""Bots defined in PostgreSQL (WABOT_BOTS_DSN) are validated like the bots file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from fleet.botsdb import BotDefinitionRow, create_table, engine_for, load_bots_from_db, store_bots
from fleet.botsfile import BotsFileError, parse_documents

pytestmark = pytest.mark.postgres

BOTS = """
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: one}
spec: {serverName: t1, commands: {prefix: "#"}}
---
apiVersion: wabot.io/v1alpha1
kind: WhatsAppBot
metadata: {name: two}
spec: {serverName: t2, botId: b2}
"""


@pytest.fixture
def engine(pg_database: str) -> Iterator[Engine]:
    eng = engine_for(pg_database)  # a postgresql:// DSN, as operators write it
    create_table(eng)
    with eng.begin() as conn:
        conn.execute(text("DELETE FROM bot_definition"))
    yield eng
    eng.dispose()


def test_bots_stored_from_a_file_load_back_identically(engine: Engine) -> None:
    bots = parse_documents(BOTS)
    assert store_bots(engine, bots) == 2
    loaded = load_bots_from_db(engine)
    assert [(b.name, b.spec) for b in loaded] == [(b.name, b.spec) for b in bots]
    assert loaded[1].bot_id == "b2" and loaded[0].spec.commands.prefix == "#"
    # store is an upsert by name
    store_bots(engine, parse_documents(BOTS.replace('prefix: "#"', 'prefix: "?"')))
    assert load_bots_from_db(engine)[0].spec.commands.prefix == "?"


def test_server_name_column_fills_and_must_agree_with_the_spec(engine: Engine) -> None:
    with Session(engine) as s:
        s.add(BotDefinitionRow(name="bare", server_name="t9", spec={}))
        s.commit()
    (bot,) = load_bots_from_db(engine)
    assert bot.server_name == "t9"
    with Session(engine) as s:
        s.add(BotDefinitionRow(name="odd", server_name="t1", spec={"serverName": "t2"}))
        s.commit()
    with pytest.raises(BotsFileError, match=r"row 'odd'.*differs"):
        load_bots_from_db(engine)


def test_a_hand_written_bad_row_names_the_row_and_field(engine: Engine) -> None:
    with Session(engine) as s:
        s.add(BotDefinitionRow(name="typo", server_name="t1",
                               spec={"rateLimit": {"perBotPerMinte": 5}}))
        s.commit()
    with pytest.raises(BotsFileError, match=r"row 'typo'[\s\S]*spec\.rateLimit\.perBotPerMinte"):
        load_bots_from_db(engine)



def test_a_row_with_a_quoted_number_is_refused_not_coerced(engine: Engine) -> None:
    """JSON written by hand (or by an admin tool that stringifies) gets no lax coercion."""
    with Session(engine) as s:
        s.add(BotDefinitionRow(name="quoted", server_name="t1",
                               spec={"rateLimit": {"perBotPerMinute": "60"}}))
        s.commit()
    with pytest.raises(BotsFileError, match=r"row 'quoted'[\s\S]*spec\.rateLimit\."
                       r"perBotPerMinute: Input should be a valid integer, got a string"):
        load_bots_from_db(engine)

def test_the_monolith_reads_its_bots_from_the_dsn(engine: Engine, pg_database: str) -> None:
    from pydantic import SecretStr

    from fleet.monolith import MonolithSettings, load_bots

    store_bots(engine, parse_documents(BOTS))
    bots = load_bots(MonolithSettings(bots_dsn=SecretStr(pg_database)))
    assert [b.name for b in bots] == ["one", "two"]
