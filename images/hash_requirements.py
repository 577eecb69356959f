#!/usr/bin/env python3
"""Adds `--hash=sha256:...` to every line of a pinned requirements file (images/requirements/).

    python3 images/hash_requirements.py images/requirements/worker.txt [--arch aarch64 ...]

The Dockerfiles install these files with `pip install --require-hashes`: pip then refuses any
file whose digest is not listed, so a release replaced on the index, a compromised mirror or a
proxy cannot slip anything into an image. The hashes are those of the wheels pip picks for the
images' interpreter: CPython 3.11 on Linux with Debian bookworm's glibc (2.36), for each
`--arch` (default x86_64, the images built here; add aarch64 to build on ARM too). They are
computed from the files `pip download` fetches from the package index, never from a local
wheel directory (PIP_FIND_LINKS is ignored): a locally built wheel has another digest.

images/lock.sh runs this inside the base image right after freezing the versions; it can also
be run on any machine with pip, since `pip download --platform` fetches the other platform's
wheels. Existing hashes in the file are dropped and recomputed; versions never change here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON_VERSION = "3.11"
# Debian bookworm's glibc: wheels for a newer glibc would not load in the images.
GLIBC_MINOR = 36
HASH_NOTE = "# Hashes: "


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The file's leading comments (minus an old hash note) and its `name==version` pins."""
    header: list[str] = []
    pins: list[tuple[str, str]] = []
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    for line in logical:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if not pins and not stripped.startswith(HASH_NOTE):
                header.append(stripped)
            continue
        requirement = stripped.split()[0]
        name, sep, version = requirement.partition("==")
        if not sep or not version or any(c in version for c in "<>=!~*,;"):
            raise SystemExit(f"{path}: {requirement!r} is not pinned with ==")
        pins.append((name, version))
    return header, pins


def platforms(arch: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags


def download(pins: list[tuple[str, str]], arch: str, dest: Path) -> None:
    requirements = dest / "requirements.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in pins))
    wheels = dest / "wheels"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--dest", str(wheels),
           "--python-version", PYTHON_VERSION, "--implementation", "cp",
           "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
           *[f"--platform={tag}" for tag in platforms(arch)],
           "-r", str(requirements)]
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_NO_INDEX")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run(cmd, check=True, env=env)


def digests(wheels: Path) -> dict[tuple[str, str], set[str]]:
    """(canonical name, version) -> sha256 digests of the downloaded wheels."""
    out: dict[tuple[str, str], set[str]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        parts = wheel.name[:-len(".whl")].split("-")
        key = (canonical(parts[0]), parts[1])
        out.setdefault(key, set()).add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--arch", action="append", dest="arches",
                        help="Linux architecture whose wheels to hash (repeatable; x86_64)")
    args = parser.parse_args(argv)
    arches: list[str] = args.arches or ["x86_64"]
    for path in args.files:
        header, pins = read_pins(path)
        found: dict[tuple[str, str], set[str]] = {}
        for arch in arches:
            with tempfile.TemporaryDirectory(prefix="wabot-hash-") as tmp:
                download(pins, arch, Path(tmp))
                per_arch = digests(Path(tmp) / "wheels")
            for name, version in pins:
                key = (canonical(name), version)
                if key not in per_arch:
                    raise SystemExit(f"{path}: no {arch} wheel of {name}=={version}")
                found.setdefault(key, set()).update(per_arch[key])
        note = (f"{HASH_NOTE}wheels for CPython {PYTHON_VERSION} on Linux "
                f"{', '.join(arches)} (images/hash_requirements.py), for "
                "pip --require-hashes.")
        lines = [*header, note]
        for name, version in pins:
            lines.append(f"{name}=={version} \\")
            hashes = sorted(found[(canonical(name), version)])
            for i, digest in enumerate(hashes):
                lines.append(f"    --hash=sha256:{digest}" + (" \\" if i < len(hashes) - 1 else ""))
        path.write_text("\n".join(lines) + "\n")
        print(f"{path}: {len(pins)} pins hashed for {', '.join(arches)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
