"""The ORM side of a tenant's database access: a sqlmodel Session confined to one tenant.

Imported only when a command handler opens a session (`CommandContext.db()`), so bots whose
commands never use the database do not carry SQLAlchemy's ORM and sqlmodel in memory.

The first wall between tenants lives here: every ORM query gets `server_name = <tenant>` added
to it (for every TenantModel, joins and relationships included); a new row without a tenant
gets this one, and a row naming another tenant is refused. The second wall, which also covers
hand-written SQL, is PostgreSQL's row-level security: the policies confine every statement to
the tenant bound to the session's login role (tenancy.py), which no SQL in the session can
change, so this module has nothing to set per transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, with_loader_criteria
from sqlmodel import Session, select

from ..core.context import CrossTenantWrite
from .models import KeyValue, TenantModel


def tenant_models() -> list[type[TenantModel]]:
    """Every table model that carries server_name (subclasses of TenantModel, found at call
    time so a plugin's own tenant tables are scoped too)."""
    found: list[type[TenantModel]] = []
    stack = list(TenantModel.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if getattr(cls, "__table__", None) is not None:
            found.append(cls)
    return found


def _scope_session(session: Session, tenant: str) -> None:
    session.info["server_name"] = tenant

    @event.listens_for(session, "do_orm_execute")
    def _filter(state: ORMExecuteState) -> None:
        if state.is_select and not state.is_column_load and not state.is_relationship_load:
            state.statement = state.statement.options(
                *(
                    with_loader_criteria(
                        model,
                        model.server_name == tenant,  # type: ignore[arg-type]
                        include_aliases=True,
                    )
                    for model in tenant_models()
                )
            )

    @event.listens_for(session, "before_flush")
    def _stamp(sess: Session, _ctx: Any, _instances: Any) -> None:
        for obj in list(sess.new) + list(sess.dirty):
            if isinstance(obj, TenantModel):
                if not obj.server_name:
                    obj.server_name = tenant
                elif obj.server_name != tenant:
                    raise CrossTenantWrite(
                        f"a {tenant!r} session may not write rows of {obj.server_name!r}"
                    )


@contextmanager
def tenant_session(engine: Engine, tenant: str) -> Iterator[Session]:
    with Session(engine) as session:
        _scope_session(session, tenant)
        yield session
        session.commit()


# --- the key-value store plugins use (kv.py; `kv_get`/`kv_set` are also importable from here) --


def orm_kv_get(session: Session, scope: str, key: str) -> str | None:
    row = session.exec(select(KeyValue).where(KeyValue.scope == scope, KeyValue.key == key)).first()
    return None if row is None else row.value


def orm_kv_set(session: Session, scope: str, key: str, value: str) -> None:
    row = session.exec(select(KeyValue).where(KeyValue.scope == scope, KeyValue.key == key)).first()
    if row is None:
        session.add(
            KeyValue(
                server_name=session.info["server_name"], scope=scope, key=key, value=value
            )
        )
    else:
        row.value = value
        row.updated_at = datetime.now(row.updated_at.tzinfo)
        session.add(row)
