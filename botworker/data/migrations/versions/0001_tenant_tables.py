"""Tenant tables: audit_entry and key_value, both keyed by server_name.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("server_name", sa.String(63), nullable=False),
        sa.Column("bot_id", sa.String(63), nullable=False),
        sa.Column("chat", sa.String(256), nullable=False),
        sa.Column("sender_hash", sa.String(64), nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_entry_server_name", "audit_entry", ["server_name"])
    op.create_index("ix_audit_entry_bot_id", "audit_entry", ["bot_id"])
    op.create_index("ix_audit_entry_created_at", "audit_entry", ["created_at"])
    op.create_table(
        "key_value",
        sa.Column("server_name", sa.String(63), primary_key=True),
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_value")
    op.drop_index("ix_audit_entry_created_at", "audit_entry")
    op.drop_index("ix_audit_entry_bot_id", "audit_entry")
    op.drop_index("ix_audit_entry_server_name", "audit_entry")
    op.drop_table("audit_entry")
