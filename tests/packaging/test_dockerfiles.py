"""The Dockerfiles and their pinned requirement sets, offline: what a reviewer would check by
eye, checked on every run (the slow image tests build and run them for real)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.conftest import REPO
from tests.security import record

ROLES = ("worker", "operator")


HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _requirements(role: str) -> list[tuple[str, list[str]]]:
    """Each requirement of images/requirements/ROLE.txt with its options (continuation lines
    joined), comments left out."""
    text = (REPO / "images" / "requirements" / f"{role}.txt").read_text()
    out = []
    for logical in text.replace("\\\n", " ").splitlines():
        words = logical.split()
        if words and not words[0].startswith("#"):
            out.append((words[0], words[1:]))
    return out


def _lock(role: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for requirement, _ in _requirements(role):
        name, sep, version = requirement.partition("==")
        assert sep and version, f"{role}.txt: {requirement!r} is not pinned with =="
        pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("role", ROLES)
def test_every_requirement_carries_its_hash(role: str) -> None:
    """Finding 13: the images installed exact versions, but whatever files the index served
    for them. Every line now lists the sha256 of its wheel(s), and pip installs the file with
    --require-hashes (any requirement without a hash, or a file with another digest, fails the
    build). Regenerate with images/lock.sh (or images/hash_requirements.py for new hashes)."""
    requirements = _requirements(role)
    assert requirements
    for requirement, options in requirements:
        hashes = [o for o in options if o.startswith("--hash")]
        assert hashes, f"{role}.txt: {requirement} has no --hash"
        assert all(HASH.match(h) for h in hashes), (requirement, hashes)
        assert len(options) == len(hashes), f"{role}.txt: {requirement}: {options}"
    record.finding("13", f"the {role} image's Python packages",
                   f"{len(requirements)}/{len(requirements)} pinned with sha256 hashes, "
                   "installed with --require-hashes")


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_installs_only_hashed_files(role: str) -> None:
    """The lock with --require-hashes; the project itself with --no-deps and without build
    isolation (an isolated build would fetch setuptools unpinned and unhashed), so the build
    backend comes from the hashed lock, at a version pyproject.toml accepts."""
    text = (REPO / f"Dockerfile.{role}").read_text()
    installs = re.findall(r"pip install ([^;\n]*)", text)
    (lock_install,) = [i for i in installs if "requirements.txt" in i]
    assert "--require-hashes" in lock_install.split()
    (project_install,) = [i for i in installs if "/src[" in i]
    assert {"--no-deps", "--no-build-isolation"} <= set(project_install.split())
    assert len(installs) == 2, installs  # nothing else is installed with pip
    pins = _lock(role)
    backend = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for spec in backend:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"the build backend {req.name} is not in {role}.txt"
        assert req.specifier.contains(pins[name]), (spec, pins[name])


def test_apt_packages_are_pinned_to_a_version() -> None:
    text = (REPO / "Dockerfile.worker").read_text()
    (packages,) = re.findall(r"apt-get install -y -qq --no-install-recommends ([^>]*)>",
                             text.replace("\\\n", " "))
    for package in packages.split():
        assert re.fullmatch(r"[a-z0-9.+-]+=[0-9]+:?[A-Za-z0-9.+~-]+", package), package


def test_the_image_base_is_pinned() -> None:
    """images/build.sh makes the base with debootstrap: it must hold exactly the packages and
    versions of images/base-packages.lock (else the build stops), and the images are built
    FROM its image ID, never a tag that could move between the two stages."""
    lock = REPO / "images" / "base-packages.lock"
    entries = [line for line in lock.read_text().splitlines() if not line.startswith("#")]
    versions = dict(line.split("=", 1) for line in entries)
    assert {"python3", "python3-venv", "python3.11", "ca-certificates", "libc6",
            "base-files"} <= versions.keys()
    assert all(versions.values()) and entries == sorted(entries)
    build = (REPO / "images" / "build.sh").read_text()
    assert 'check_lock "$rootfs" "$relock" || return 1' in build
    base_by_id = """"BASE_IMAGE=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")\""""
    assert f"--build-arg {base_by_id}" in build


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
    assert "COPY operator/bot-templates /etc/wabot/bot-templates" in text
    assert "WABOT_OPERATOR_TEMPLATES_DIR=/etc/wabot/bot-templates" in text


def test_build_context_leaves_out_everything_but_the_sources() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "start from nothing and allow only what the images need"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "wabot", "wabot_cli", "botworker", "fleet",
                       "operator", "gateway", "images/requirements"}
