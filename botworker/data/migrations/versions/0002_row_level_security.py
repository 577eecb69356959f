"""Row-level security on every tenant table (PostgreSQL only; SQLite has no RLS).

FORCE makes the policies apply to the table owner too, so a worker that connects as the role
that ran the migrations is still confined to its tenant. A session that has not set
`app.server_name` sees no rows at all (current_setting(..., true) is NULL then), which is the
safe failure. Superusers and BYPASSRLS roles are exempt by PostgreSQL's design: the worker warns
when it connects as one.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("audit_entry", "key_value")
POLICY = "tenant_isolation"
CHECK = "server_name = current_setting('app.server_name', true)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({CHECK}) WITH CHECK ({CHECK})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
