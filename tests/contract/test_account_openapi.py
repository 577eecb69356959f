"""The account's routes in gateway/openapi.yaml are the worker's routes and models: generated
by wabot/account_openapi.py from wabot/account.py, compared here, and every route the worker
serves for them documented (and nothing documented that it does not serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from botworker.runtime.contacts_api import ContactsApi
from botworker.runtime.groups_api import GroupsApi
from botworker.runtime.session_api import SessionApi
from wabot import account_openapi

DOC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "gateway" / "openapi.yaml").read_text())
SAMPLE = {"{group}": "120363000000000001", "{user}": "15550001111"}


@pytest.mark.parametrize("path", sorted(account_openapi.paths()))
def test_each_path_is_generated_from_the_models(path: str) -> None:
    assert DOC["paths"][path] == account_openapi.paths()[path], (
        "regenerate: python -m wabot.account_openapi")


@pytest.mark.parametrize("name", sorted(account_openapi.components()))
def test_each_schema_is_the_model(name: str) -> None:
    assert DOC["components"]["schemas"][name] == account_openapi.components()[name], (
        "regenerate: python -m wabot.account_openapi")


def test_the_documented_routes_are_the_workers() -> None:
    routes = [*SessionApi(None, lambda: None, None).routes(),  # type: ignore[arg-type]
              *GroupsApi(None).routes(), *ContactsApi(None).routes()]  # type: ignore[arg-type]
    documented = set()
    for path, ops in account_openapi.paths().items():
        tail = path.removeprefix(account_openapi.BOT)
        for key, value in SAMPLE.items():
            tail = tail.replace(key, value)
        for method in ops:
            documented.add((method.upper(), "/v1/" + tail))
    served = set()
    for method, path in documented:
        assert any(r.method == method and r.match(path) is not None for r in routes), (
            method, path)
    for r in routes:
        hits = [(m, p) for m, p in documented if m == r.method and r.match(p) is not None]
        assert hits, f"{r.method} {r.pattern} is not documented"
        served.update(hits)
    assert served == documented
