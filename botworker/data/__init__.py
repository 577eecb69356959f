"""The bot's data: tenant tables (sqlmodel), the tenant-scoped session, migrations.

Importing this package does not import SQLAlchemy, and neither do `db` (sessions),
`session`, `kv` (the key-value store) and `auditrows`: a bot's own rows go through the driver
alone. `models` and `orm` do, and are imported only when a plugin uses the ORM (SQLAlchemy
and sqlmodel add ~20 MiB to a process whose idle budget is 64 MiB).
"""
