"""The pure parts of tenant roles: names, the SCRAM verifier, DSNs, and the schema head the
worker waits for (which must be the migrations' own head)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from botworker.data.migrate import MIGRATIONS
from botworker.data.tenancy import (
    RLS_TABLES,
    SCHEMA_HEAD,
    TENANT_PRIVILEGES,
    default_role_name,
    dsn_for_role,
    scram_verifier,
)


def test_schema_head_is_the_newest_migration() -> None:
    revisions = sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert revisions[-1] == SCHEMA_HEAD


def test_default_role_names_fit_postgres_and_stay_unique() -> None:
    assert default_role_name("acme") == "wabot_acme"
    long_a, long_b = "a" * 62 + "b", "a" * 62 + "c"
    assert len(default_role_name(long_a)) <= 63
    assert default_role_name(long_a) != default_role_name(long_b)


def test_scram_verifier_matches_the_rfc_construction() -> None:
    v = scram_verifier("s3cret", iterations=4096)
    method, rest = v.split("$", 1)
    assert method == "SCRAM-SHA-256"
    iter_salt, keys = rest.split("$")
    iterations, salt_b64 = iter_salt.split(":")
    stored_b64, server_b64 = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret", base64.b64decode(salt_b64), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(stored_b64) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server_b64) == hmac.new(salted, b"Server Key",
                                                    hashlib.sha256).digest()
    assert "s3cret" not in v


def test_dsn_for_role_keeps_host_database_and_options() -> None:
    owner = "postgresql://owner:o%40pw@db.example:6543/wabot?sslmode=require"
    assert dsn_for_role(owner, "wabot_acme", "p@ss/word") == (
        "postgresql://wabot_acme:p%40ss%2Fword@db.example:6543/wabot?sslmode=require")
    assert dsn_for_role(owner, "wabot_acme", None) == (
        "postgresql://wabot_acme@db.example:6543/wabot?sslmode=require")


def test_tenant_roles_get_no_truncate_and_append_only_audit() -> None:
    assert all("TRUNCATE" not in p for p in TENANT_PRIVILEGES.values())
    assert TENANT_PRIVILEGES["audit_entry"] == ("SELECT", "INSERT")
    assert set(RLS_TABLES) <= set(TENANT_PRIVILEGES)
    assert Path(MIGRATIONS / "versions" / "0003_tenant_roles.py").is_file()
