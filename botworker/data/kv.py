"""The key-value store plugins use: (scope, key) -> text, one namespace per tenant.

    with ctx.db() as session:
        kv_set(session, "notes", "greeting", "hello")
        kv_get(session, "notes", "greeting")  # "hello"

On a session no plugin has used the ORM in, the rows are read and written with the driver
(session.py): no SQLAlchemy, no sqlmodel in the bot's memory. On an ORM session (a sqlmodel
Session, or a `TenantSession` that has become one) the same rows go through the ORM, as
before. The rows are the same either way: `key_value` of models.py, `updated_at` stored as
the ORM stores it (text without an offset on SQLite, timestamptz on PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .session import TenantSession

# SQLAlchemy's DateTime on SQLite stores this text (auditrows.py writes created_at the same).
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def kv_get(session: Any, scope: str, key: str) -> str | None:
    """The value stored under (scope, key) for the session's tenant, or None."""
    if isinstance(session, TenantSession) and session.uses_driver:
        p = session.placeholder
        rows = session.run(
            f"SELECT value FROM key_value WHERE server_name = {p} AND scope = {p} AND key = {p}",
            (session.tenant, scope, key))
        return None if not rows else str(rows[0][0])
    from .orm import orm_kv_get

    return orm_kv_get(_orm(session), scope, key)


def kv_set(session: Any, scope: str, key: str, value: str) -> None:
    """Store `value` under (scope, key) for the session's tenant (insert or replace)."""
    if isinstance(session, TenantSession) and session.uses_driver:
        p = session.placeholder
        now = datetime.now(UTC)
        session.run(
            f"INSERT INTO key_value (server_name, scope, key, value, updated_at) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (server_name, scope, key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (session.tenant, scope, key, value,
             now.strftime(SQLITE_TIME) if session.sqlite else now))
        session.remember_write(scope, key, value)
        return
    from .orm import orm_kv_set

    orm_kv_set(_orm(session), scope, key, value)


def _orm(session: Any) -> Any:
    return session.orm() if isinstance(session, TenantSession) else session
