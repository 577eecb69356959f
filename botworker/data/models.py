"""Tenant tables. Every one carries `server_name`, the tenant key that the scoped session fills
in and filters on, and that PostgreSQL's row-level security policies check.

Adding a table: subclass `TenantModel`, add it to `TENANT_TABLES`, write a migration that
creates it, enables and forces RLS on it with the `tenant_isolation` policy of 0003 (the tenant
of `current_user`) and grants the tenant privileges to the roles already bound in
`wabot_tenant_role`, and add it to `tenancy.TENANT_PRIVILEGES` (what `provision` grants).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class TenantModel(SQLModel):
    server_name: str = Field(max_length=63, index=True)


class AuditEntry(TenantModel, table=True):
    """One row per handled command. `id` is made by the worker, so a spooled row written twice
    (a flush interrupted by a crash) is stored once."""

    __tablename__ = "audit_entry"

    id: str = Field(primary_key=True, max_length=36)
    bot_id: str = Field(max_length=63, index=True)
    chat: str = Field(max_length=256)
    sender_hash: str = Field(max_length=64)
    command: str = Field(max_length=64)
    result: str = Field(max_length=32)
    latency_ms: int = 0
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


class KeyValue(TenantModel, table=True):
    """A small per-tenant store for plugins: (scope, key) -> text value."""

    __tablename__ = "key_value"

    server_name: str = Field(max_length=63, primary_key=True)
    scope: str = Field(max_length=64, primary_key=True)
    key: str = Field(max_length=128, primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


TENANT_TABLES = (AuditEntry.__tablename__, KeyValue.__tablename__)
