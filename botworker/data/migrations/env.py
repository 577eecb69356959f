"""Alembic environment: migrations run against the URL the worker passes in `attributes`.

The URL is never put in alembic's ini-style config (its interpolation mangles '%' in
passwords, and the config may be logged). On PostgreSQL a session advisory lock serialises
the migration: every bot's worker runs it at start, often at the same moment after a rollout.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from botworker.data.db import normalize_url

MIGRATION_LOCK_KEY = 7_214_020_501

url = context.config.attributes["url"]
normalized = normalize_url(url)
connect_args = {"connect_timeout": 5} if normalized.startswith("postgresql") else {}
engine = create_engine(normalized, poolclass=NullPool, connect_args=connect_args)
with engine.connect() as connection:
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
    try:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()
engine.dispose()
