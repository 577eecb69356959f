"""The per-bot manifest templates in `operator/bot-templates/`: plain YAML a cluster admin can read
and override, with `${placeholder}` strings.

Placeholders are substituted inside each parsed string value, never in the YAML text, so a
value (a tenant name, an image reference) can never change the document's structure. An
unknown placeholder is an error naming the file, not a silently empty field.
"""

from __future__ import annotations

import copy
import hashlib
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wabot_operator.config import TEMPLATE_FILES

# template file -> the kind it must hold
EXPECTED_KINDS: Mapping[str, tuple[str, str]] = {
    "pvc.yaml": ("v1", "PersistentVolumeClaim"),
    "serviceaccount.yaml": ("v1", "ServiceAccount"),
    "role.yaml": ("rbac.authorization.k8s.io/v1", "Role"),
    "rolebinding.yaml": ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    "lease.yaml": ("coordination.k8s.io/v1", "Lease"),
    "pod.yaml": ("v1", "Pod"),
}

PLACEHOLDERS = (
    "bot",
    "namespace",
    "childName",
    "pvcName",
    "leaseName",
    "serverName",
    "botId",
    "image",
    "storageSize",
)


class TemplateError(ValueError):
    """A template is missing, unparsable, of the wrong kind, or uses an unknown placeholder."""


@dataclass(frozen=True)
class Templates:
    """The parsed templates; `version` changes whenever any file changes (used to re-apply)."""

    docs: Mapping[str, Mapping[str, Any]]
    version: str

    def render(self, file: str, values: Mapping[str, str]) -> dict[str, Any]:
        """A deep copy of one template with every placeholder substituted."""
        try:
            doc = self.docs[file]
        except KeyError:
            raise TemplateError(f"no template {file}") from None
        rendered: dict[str, Any] = _substitute(copy.deepcopy(dict(doc)), values, file)
        return rendered


def _substitute(node: Any, values: Mapping[str, str], file: str) -> Any:
    if isinstance(node, str):
        try:
            return string.Template(node).substitute(values)
        except KeyError as e:
            raise TemplateError(
                f"{file}: unknown placeholder ${{{e.args[0]}}} (known: {', '.join(PLACEHOLDERS)})"
            ) from None
        except ValueError as e:
            raise TemplateError(f"{file}: bad placeholder in {node!r}: {e}") from None
    if isinstance(node, dict):
        return {_substitute(k, values, file): _substitute(v, values, file) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values, file) for v in node]
    return node


def load_templates(directory: Path) -> Templates:
    docs: dict[str, Mapping[str, Any]] = {}
    stamps: list[str] = []
    for file in TEMPLATE_FILES:
        path = directory / file
        try:
            text = path.read_text()
        except OSError as e:
            raise TemplateError(f"{path}: {e.strerror or e}") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TemplateError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(doc, dict):
            raise TemplateError(f"{path}: must hold one mapping (a Kubernetes object)")
        api_version, kind = EXPECTED_KINDS[file]
        if doc.get("apiVersion") != api_version or doc.get("kind") != kind:
            raise TemplateError(
                f"{path}: must be apiVersion {api_version} kind {kind}, "
                f"not {doc.get('apiVersion')} {doc.get('kind')}"
            )
        docs[file] = doc
        stamps.append(text)
    version = hashlib.sha256("\0".join(stamps).encode()).hexdigest()[:16]
    return Templates(docs=docs, version=version)


class TemplateStore:
    """Loads the templates and reloads them when a file changes (a ConfigMap mount updates in
    place), so an admin's override takes effect without restarting the operator. A broken
    edit keeps the last good set in use and is reported through `error`.

    The files are looked at (six stat() calls) at most every `recheck_s`: every reconcile
    pass asks, and at 20 new bots a second that was a few percent of the operator's CPU; a
    ConfigMap update reaches the mount only after the kubelet's sync (up to a minute) anyway."""

    def __init__(self, directory: Path, recheck_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._directory = directory
        self._recheck_s = recheck_s
        self._clock = clock
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._templates: Templates | None = None
        self.error: str | None = None

    def _current_stamp(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for file in TEMPLATE_FILES:
            try:
                st = (self._directory / file).stat()
                out.append((file, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((file, -1, -1))
        return tuple(out)

    def get(self) -> Templates:
        with self._lock:
            now = self._clock()
            if (self._templates is not None and self._checked_at is not None
                    and now - self._checked_at < self._recheck_s):
                return self._templates
            self._checked_at = now
            stamp = self._current_stamp()
            if stamp != self._stamp or self._templates is None:
                try:
                    self._templates = load_templates(self._directory)
                    self.error = None
                except TemplateError as e:
                    self.error = str(e)
                    if self._templates is None:
                        raise
                self._stamp = stamp
            return self._templates
