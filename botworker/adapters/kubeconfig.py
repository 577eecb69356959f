"""Kubeconfig files as client-go reads them (the first existing file of $KUBECONFIG, the
current context, certificate and key files or `*-data`, token or tokenFile) and the TLS
context they name. Used by `kube_client` outside a pod; exec and auth-provider plugins are
refused there, since the worker runs them nowhere."""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class KubeConfigError(Exception):
    """The credentials cannot be loaded (missing file, unsupported auth, bad data)."""


def kubeconfig_path(path: str | Path | None) -> Path:
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get("KUBECONFIG"):
        candidates = [Path(p) for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        candidates = [Path.home() / ".kube" / "config"]
    for c in candidates:
        if c.is_file():
            return c
    raise KubeConfigError(
        "no kubeconfig: not in a pod (KUBERNETES_SERVICE_HOST, a ServiceAccount token) and "
        f"none of {', '.join(map(str, candidates))} exists")


def load_document(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except OSError as exc:
        raise KubeConfigError(f"cannot read {file}: {exc.strerror}") from None
    try:
        doc = json.loads(text)  # a JSON kubeconfig needs no YAML parser in memory
    except ValueError:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            raise KubeConfigError(f"{file} is neither YAML nor JSON") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"{file} is not a kubeconfig")
    return doc


def named_entry(cfg: dict[str, Any], section: str, name: Any, file: Path) -> dict[str, Any]:
    for entry in cfg.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise KubeConfigError(f"{file}: no {section[:-1]} named {name!r}")


def relative_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


class Materialized:
    """`*-data` fields as files for the ssl module (it loads certificates and keys only from
    files): written 0600 to a private temporary directory, removed once loaded."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Materialized:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            self._dir.cleanup()

    def path(self, section: Mapping[str, Any], key: str, base: Path) -> Path | None:
        data = section.get(f"{key}-data")
        if data:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="wabot-kube-")
            target = Path(self._dir.name) / key
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                raw = base64.b64decode(data, validate=True)
            except ValueError:
                os.close(fd)
                raise KubeConfigError(f"{key}-data is not base64") from None
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            return target
        value = section.get(key)
        return relative_path(base, value) if value else None


def tls_context(*, ca_file: Path | None = None, insecure: bool = False,
             cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    try:
        if insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif ca_file is not None:
            # Only the cluster's CA: loading the system bundle as well would cost memory and
            # trust every public CA for the API server.
            ctx = ssl.create_default_context(cafile=str(ca_file))
        else:
            ctx = ssl.create_default_context()
        if cert_file is not None:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"cannot load the TLS credentials: {exc}") from None
    # One HTTP/1.1 request per connection at a time; no ALPN h2 (http.client speaks 1.1).
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
