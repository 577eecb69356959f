"""Images for the real node, which has no registry to pull from: the pause image (the pod
sandbox, written here as an OCI archive around build-tools.sh's wabot-pause binary) and images
podman built (the worker's, by images/build.sh), saved once per image ID into the tools cache
and imported with `ctr images import`. Pods use them with imagePullPolicy Never or
IfNotPresent; a pull could not leave the node's network namespace anyway.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Protocol

from devcluster.nodefiles import PAUSE_IMAGE

ARCHIVES = Path(os.environ.get("WABOT_TOOLS_CACHE",
                               Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                               / "wabot-tools")) / "images"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Node(Protocol):
    """What images need of a node (devcluster.node.RealNode): its directory and containerd's
    client. Named here so that the node imports images, not the other way round."""

    @property
    def root(self) -> Path: ...

    def ctr(self, *args: str, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess[str]: ...


def _blob(out: tarfile.TarFile, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    _add(out, f"blobs/sha256/{digest}", data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _add(out: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    out.addfile(info, io.BytesIO(data))


def pause_archive(binary: Path, path: Path) -> Path:
    """An OCI image layout (tar) whose one layer is `/pause`, run as nobody; the same bytes
    every time for the same binary."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        _add(layer, "pause", binary.read_bytes(), mode=0o755)
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as out:
        layer_desc = _blob(out, layer_bytes)
        config_desc = _blob(out, json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
        manifest_desc = _blob(out, json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        **layer_desc}]}).encode())
        _add(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(out, "index.json", json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, **manifest_desc,
            "annotations": {"io.containerd.image.name": PAUSE_IMAGE,
                            "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":", 1)[1]},
        }]}).encode())
    return path


def import_pause(node: Node, binary: Path) -> None:
    archive = pause_archive(binary, node.root / "pause.oci.tar")
    node.ctr("images", "import", str(archive))
    archive.unlink()


def podman_image_id(image: str) -> str:
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"podman has no image {image}: build it with images/build.sh "
                           f"({out.stderr.strip()})")
    return out.stdout.strip()


def saved_archive(image: str) -> Path:
    """`podman save` of `image` (OCI archive), once per image ID: a rebuilt image replaces its
    tag's older archive."""
    image_id = podman_image_id(image)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", image)
    path = ARCHIVES / f"{stem}-{image_id[:16]}.tar"
    if path.exists():
        return path
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    out = subprocess.run(["podman", "save", "--format", "oci-archive", "-o", str(tmp), image],
                         capture_output=True, text=True)
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"podman save {image} failed: {out.stderr.strip()}")
    for old in ARCHIVES.glob(f"{stem}-*.tar"):
        old.unlink()
    tmp.rename(path)
    return path


def config_digest(archive: Path) -> str:
    """The image config's digest in an OCI archive of one image: its ID to the CRI."""
    with tarfile.open(archive) as tar:
        def read(name: str) -> Any:
            member = tar.extractfile(name)
            assert member is not None, f"{archive} has no {name}"
            return json.load(member)

        manifest = read(f"blobs/sha256/{read('index.json')['manifests'][0]['digest'][7:]}")
        return str(manifest["config"]["digest"])


def load_image(node: Node, image: str) -> bool:
    """Imports podman's `image` into the node unless the node already has that very build.
    Returns whether it imported."""
    archive = saved_archive(image)
    image_id = config_digest(archive)  # the ID the CRI knows it by (not podman's)
    marker = node.root / "images.json"
    loaded = json.loads(marker.read_text()) if marker.exists() else {}
    if loaded.get(image) == image_id:
        return False
    # podman names the image in the archive (org.opencontainers.image.ref.name); ctr 1.6's
    # --index-name would wrap it in an index its unpacker then cannot find.
    node.ctr("images", "import", str(archive), timeout=600)
    if image not in node.ctr("images", "ls", "-q").stdout.split():
        raise RuntimeError(f"{archive} did not import as {image}")
    drop_replaced_builds(node)
    loaded[image] = image_id
    marker.write_text(json.dumps(loaded))
    return True


def drop_replaced_builds(node: Node) -> None:
    """Removes the CRI's by-ID references (`sha256:<config>`) to builds no name points at any
    more: without this every rebuild would stay on a long-lived node's disk. Content still
    used by a container is kept by containerd."""
    rows = [line.split() for line in node.ctr("images", "ls").stdout.splitlines()[1:]]
    named = {row[2] for row in rows if len(row) > 2 and not row[0].startswith("sha256:")}
    for row in rows:
        if len(row) > 2 and row[0].startswith("sha256:") and row[2] not in named:
            node.ctr("images", "rm", row[0], check=False)
