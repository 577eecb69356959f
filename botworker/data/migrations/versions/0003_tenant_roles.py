"""The tenant comes from the login role, not from a session setting (PostgreSQL only).

Until 0002 the policies compared `server_name` with the setting `app.server_name`, which any
SQL in the session could set to another tenant. Now the tenant of a session is the row of
`wabot_tenant_role` for its `current_user`, which only the owner role (the one running these
migrations) can write. Tenant roles get their privileges from `provision` (tenancy.py), never
through PUBLIC: this revokes what PUBLIC may have had on the tenant tables and on the schema.

The mapping table has row-level security too (not forced: its owner manages it), so a tenant
role sees its own binding only and cannot list the other tenants' roles.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Written out, not imported from tenancy.py: a migration must keep doing what it did when it
# was written, whatever the code later says (tenancy.py's constants match these today).
MAPPING_TABLE = "wabot_tenant_role"
RLS_TABLES = ("audit_entry", "key_value")
PRIVATE_TABLES = (*RLS_TABLES, MAPPING_TABLE, "alembic_version")
TENANT_OF_CURRENT_ROLE = (
    f"(SELECT m.server_name FROM {MAPPING_TABLE} m WHERE m.role_name = current_user::text)"
)
POLICY = "tenant_isolation"
OLD_CHECK = "server_name = current_setting('app.server_name', true)"
CHECK = f"server_name = {TENANT_OF_CURRENT_ROLE}"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE TABLE {MAPPING_TABLE} ("
        " role_name text PRIMARY KEY,"
        " server_name varchar(63) NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())"
    )
    op.execute(f"CREATE INDEX ix_{MAPPING_TABLE}_server_name ON {MAPPING_TABLE} (server_name)")
    op.execute(f"ALTER TABLE {MAPPING_TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY own_binding ON {MAPPING_TABLE} FOR SELECT "
        "USING (role_name = current_user::text)"
    )
    for table in PRIVATE_TABLES:
        op.execute(f"REVOKE ALL ON TABLE {table} FROM PUBLIC")
    # PostgreSQL 15 no longer lets PUBLIC create in `public`; older servers did. A no-op (with
    # a warning) when the migrating role does not own the schema.
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    for table in RLS_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({CHECK}) WITH CHECK ({CHECK})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in RLS_TABLES:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({OLD_CHECK}) WITH CHECK ({OLD_CHECK})"
        )
    op.execute(f"DROP TABLE {MAPPING_TABLE}")
