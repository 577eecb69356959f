"""The process tiers' migrate step: once, as the owner role, retried while the database is
down, never blocking the bots, and never logging the owner's password."""

from __future__ import annotations

import logging

import pytest

from fleet.schema import MigrateStep, start_migrate_step


def test_no_owner_dsn_no_migrate_step() -> None:
    assert start_migrate_step({"DATABASE_URL": "postgresql://t:pw@db/app"}) is None


def test_retries_until_the_migrations_run_and_logs_no_password(
        caplog: pytest.LogCaptureFixture) -> None:
    results = iter([(False, "OperationalError: connection refused"),
                    (False, "OperationalError: connection refused"), (True, "")])
    urls: list[str] = []

    def migrate(url: str) -> tuple[bool, str]:
        urls.append(url)
        return next(results)

    caplog.set_level(logging.INFO, logger="wabot.fleet.schema")
    step = MigrateStep("postgresql://owner:hunter2@db/app", migrate, base_s=0.01, cap_s=0.02)
    step.start()
    assert step.done.wait(5)
    assert step.attempts == 3 and urls == ["postgresql://owner:hunter2@db/app"] * 3
    assert "hunter2" not in caplog.text
    assert any(getattr(r, "db", "") == "postgresql://owner:***@db/app" for r in caplog.records)
