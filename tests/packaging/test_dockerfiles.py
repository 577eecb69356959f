"""The Dockerfiles and their pinned requirement sets, offline: what a reviewer would check by
eye, checked on every run (the slow image tests build and run them for real)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.conftest import REPO

ROLES = ("worker", "operator")


def _lock(role: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "images" / "requirements" / f"{role}.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{role}.txt: {line!r} is not pinned with =="
        pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("role", ROLES)
def test_lock_pins_every_dependency_within_pyproject_ranges(role: str) -> None:
    """The image installs the lock, then the project with --no-deps: a dependency missing from
    the lock, or pinned outside pyproject's range, would break the image (pip check) or ship
    something nobody asked for. Regenerate with images/lock.sh."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _lock(role)
    for spec in [*project["dependencies"], *project["optional-dependencies"][role]]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in images/requirements/{role}.txt: images/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} is outside {req.specifier}: run images/lock.sh")
        for extra in req.extras:  # e.g. psycopg[binary]
            assert f"{name}-{extra}" in pins, f"{req.name}[{extra}] is not locked"
    assert "wabot" not in pins and "pip" not in pins


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_is_standard_and_hardened(role: str) -> None:
    text = (REPO / f"Dockerfile.{role}").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert text.count("FROM ${BASE_IMAGE}") == 2, "builder and final stage on the same base"
    assert re.search(r"^COPY --from=builder /opt/venv /opt/venv$", text, re.M)
    assert f"images/requirements/{role}.txt" in text
    assert f'"/src[{role}]"' in text and "--no-deps" in text and "pip check" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^ENTRYPOINT \[\"wabot\"\]$", text, re.M)
    assert f"ROLE={role}" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    # The optional CA is an ARG (build time only), never an ENV baked into the image.
    assert re.search(r"^ARG PIP_CERT$", text, re.M)
    assert not re.search(r"^ENV[^\n]*PIP_CERT", text, re.M)
    assert ":latest" not in text


def test_worker_image_has_libmagic_for_neonize() -> None:
    assert "libmagic1" in (REPO / "Dockerfile.worker").read_text()


def test_operator_image_carries_the_bot_templates() -> None:
    text = (REPO / "Dockerfile.operator").read_text()
    assert "COPY auth-templates /etc/wabot/auth-templates" in text
    assert "WABOT_OPERATOR_TEMPLATES_DIR=/etc/wabot/auth-templates" in text


def test_build_context_leaves_out_everything_but_the_sources() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "start from nothing and allow only what the images need"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "wabot", "botworker", "fleet",
                       "operator", "gateway", "auth-templates", "images/requirements"}
