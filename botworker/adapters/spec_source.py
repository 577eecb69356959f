"""Where the running bot's WhatsAppBotSpec comes from, and how a change reaches it.

Three sources: the API server (kube.SpecWatcher), a YAML file (a bare spec or a whole
WhatsAppBot manifest; polled, so a mounted ConfigMap or an edited file applies without a
restart), or defaults built from SERVER_NAME alone.

A spec naming another tenant or another bot is refused: the pod's identity (and its session
store) is fixed by its environment, and a spec must never redirect it.

The spec is read into wabot/spec_view.py's dataclasses, not validated by the pydantic model:
the worker never loads pydantic (bench/PROFILE-density.md). What it reads was validated
upstream (the API server by the CRD's schema and CEL rules; the fleet tiers' supervisor by the
model, fleet/botsfile.py); a spec it cannot read still stops it with one line naming the field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wabot.spec_view import KIND, WhatsAppBotSpec
from wabot.specread import SpecError, read

from ..config import ConfigError, WorkerConfig
from ..logs import get_logger

log = get_logger("spec")


class SpecMismatch(ConfigError):
    pass


def default_spec(cfg: WorkerConfig) -> WhatsAppBotSpec:
    return WhatsAppBotSpec(server_name=cfg.server_name, bot_id=cfg.bot_id)


def spec_from_object(obj: Any, cfg: WorkerConfig) -> WhatsAppBotSpec:
    """Read a bare spec or a WhatsAppBot object, and check it is this bot's."""
    if not isinstance(obj, dict):
        raise ConfigError("the spec must be a mapping")
    raw = obj.get("spec") if obj.get("kind") == KIND or "apiVersion" in obj else obj
    try:
        spec = read(WhatsAppBotSpec, raw)
    except SpecError as exc:
        raise ConfigError(f"invalid spec: {exc}") from None
    check_identity(spec, cfg)
    return spec


def check_identity(spec: WhatsAppBotSpec, cfg: WorkerConfig) -> None:
    if spec.server_name != cfg.server_name:
        raise SpecMismatch(
            f"the spec's serverName {spec.server_name!r} is not SERVER_NAME {cfg.server_name!r}"
        )
    bot_id = spec.bot_id or cfg.bot_name  # botId defaults to metadata.name
    if bot_id != cfg.bot_id:
        raise SpecMismatch(f"the spec's botId {bot_id!r} is not BOT_ID {cfg.bot_id!r}")


def load_file(path: Path, cfg: WorkerConfig) -> WhatsAppBotSpec:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"WABOT_SPEC_SOURCE: cannot read the spec file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"WABOT_SPEC_SOURCE: the spec file {path} is not UTF-8 text") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"the spec file {path} is not valid YAML: {first}") from None
    return spec_from_object(obj, cfg)


class FileSpecWatcher:
    """Polls the file's mtime and size; a change that validates is handed to `on_spec`, one
    that does not is logged and the running spec stays."""

    def __init__(
        self,
        path: Path,
        cfg: WorkerConfig,
        on_spec: Callable[[WhatsAppBotSpec], None],
        interval_s: float = 2.0,
    ) -> None:
        self._path = path
        self._cfg = cfg
        self._on_spec = on_spec
        self._interval = interval_s
        self._stamp = self._current_stamp()
        self.rejected = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spec-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            stamp = self._current_stamp()
            if stamp is None or stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                spec = load_file(self._path, self._cfg)
            except ConfigError as exc:
                self.rejected += 1
                log.error("ignoring the changed spec file", extra={"error": str(exc)})
                continue
            try:
                self._on_spec(spec)
            except Exception:
                log.exception("applying the new spec failed")
