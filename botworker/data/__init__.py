"""The bot's data: tenant tables (sqlmodel), the tenant-scoped session, migrations.

Importing this package does not import SQLAlchemy; `botworker.data.db` and
`botworker.data.models` do, and the worker imports them only when it first needs the database
(SQLAlchemy and sqlmodel add ~20 MB to a process whose budget is under 90 MB).
"""
