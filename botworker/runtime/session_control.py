"""Session control: log out, restart the connection, ask for a fresh pairing; from the API
(session_api.py) or from the WhatsAppBot's annotations, each request acted on exactly once.

Log out unlinks the phone (neonize's `logout()`, when connected), stops the session, wipes the
store from the volume and then ends the worker with EXIT_REPAIR: the pod (or the fleet's
supervisor) starts a fresh process, which finds no session and pairs at once. A fresh process
rather than a second neonize client in this one: several clients in one process abort it
(../shared/notes/neonize.md), and the old client's Go side still holds the store it just
deleted. One process at a time also keeps the Lease's promise: this one releases the Lease
only after its session has ended (Worker.stop), the next one takes it after that.

Exactly once: a request's id (the API's Idempotency-Key, or the annotation
`wabot.io/session-action-id`) is recorded on the volume before the action and again with its
outcome (adapters/session_actions.py); the same id again gets the recorded outcome back, across
restarts, and the outcome also goes to status.worker.sessionAction.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from wabot.spec_view import PairingSpec
from wabot.specread import read
from wabot.states import WorkerState
from wabot.status_view import SessionActionStatus

from ..adapters.session_actions import load_record, record_path, save_record, wipe_session
from ..adapters.session_store import has_linked_session
from ..config import WorkerConfig
from ..core import lifecycle as lc
from ..logs import get_logger
from .account_ops import OpMetrics

if TYPE_CHECKING:  # the API's request model (pydantic): the API has parsed it already
    from wabot.account import PairingRequest
    from wabot.status import SessionAction

log = get_logger("session")

# The worker's exit code after a logout: restart me, straight into pairing.
EXIT_REPAIR = 3
ANNOTATION_ACTION = "wabot.io/session-action"
ANNOTATION_ID = "wabot.io/session-action-id"
ACTIONS: tuple[SessionAction, ...] = ("logout", "restart", "pairing")
Source = Literal["api", "kubernetes"]


def finish_pending_logout(cfg: WorkerConfig) -> None:
    """At start, before the store is opened: a logout interrupted after the phone was
    unlinked but before the wipe (the session did not end in time) is finished now."""
    path = record_path(cfg.session_dir)
    last = load_record(path)
    if last is None or last.action != "logout" or last.result != "Started":
        return
    removed = wipe_session(cfg.session_path)
    log.info("finishing an interrupted logout", extra={"removed": removed})
    save_record(path, replace(
        last, result="Succeeded", at=_now(),
        message="logged out; the session was wiped when the worker restarted"))


class Busy(Exception):
    """Another session action is being carried out."""


class SessionControl:
    def __init__(self, cfg: WorkerConfig, client: Any, connection: Any, *, ops: OpMetrics,
                 publish: Callable[[], None], request_exit: Callable[[int], None],
                 stop_timeout_s: float = 15.0) -> None:
        self._cfg = cfg
        self._client = client
        self._connection = connection
        self._ops = ops
        self._publish = publish
        self._request_exit = request_exit
        self._stop_timeout_s = stop_timeout_s
        self._record_path = record_path(cfg.session_dir)
        self._lock = threading.Lock()
        self._pairing: PairingSpec | None = None
        self.exiting = False
        self.last: SessionActionStatus | None = load_record(self._record_path)

    # --- start ----------------------------------------------------------------------------------

    def adopt_status(self, obj: Mapping[str, Any]) -> None:
        """The outcome status.worker shows, when the volume has no record (a new volume): an
        annotation already acted on is not acted on again."""
        raw = ((obj.get("status") or {}).get("worker") or {}).get("sessionAction")
        if self.last is None and raw:
            with contextlib.suppress(ValueError):
                self.last = read(SessionActionStatus, raw, "status.worker.sessionAction")

    def pairing_spec(self, default: PairingSpec) -> PairingSpec:
        """The pairing to use: a fresh one asked for through the API wins over the spec's."""
        return self._pairing or default

    # --- requests -------------------------------------------------------------------------------

    def request(self, action: SessionAction, request_id: str | None, source: Source,
                pairing: PairingRequest | None = None) -> tuple[SessionActionStatus, bool]:
        """Carry out `action` once per `request_id`: (outcome, replayed). Raises Busy."""
        rid = request_id or uuid.uuid4().hex
        if not self._lock.acquire(blocking=False):
            raise Busy
        try:
            last = self.last
            if last is not None and last.request_id == rid and last.action == action:
                return last, True
            record = SessionActionStatus(request_id=rid, action=action, source=source,
                                         result="Started", at=_now())
            started = time.perf_counter()
            if action == "logout":
                out = self._logout(record)
            elif action == "restart":
                out = self._restart(record)
            else:
                out = self._new_pairing(record, pairing)
            self._ops.observe(f"session_{action}", out.result.lower(), started)
            log.info("session action", extra={"action": action, "source": source,
                                              "result": out.result, "detail": out.message})
            return out, False
        finally:
            self._lock.release()

    def on_object(self, obj: Mapping[str, Any]) -> None:
        """The bot's WhatsAppBot as the watch delivers it: act on a new annotated request (on
        a thread of its own: a logout takes seconds, the watch must go on)."""
        self.adopt_status(obj)
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        action = annotations.get(ANNOTATION_ACTION)
        rid = annotations.get(ANNOTATION_ID)
        if not action:
            return
        last = self.last
        if not rid or len(rid) > 255:
            rid = f"{action}@{(obj.get('metadata') or {}).get('uid', '')}"[:255]
        if last is not None and last.request_id == rid:
            return
        threading.Thread(target=self._annotated, args=(action, rid), daemon=True,
                         name="session-action").start()

    def _annotated(self, action: str, rid: str) -> None:
        try:
            if action not in ACTIONS:
                record = SessionActionStatus(
                    request_id=rid, action="restart", source="kubernetes", at=_now(),
                    result="Rejected",
                    message=f"unknown {ANNOTATION_ACTION} {action[:40]!r}: use one of "
                            f"{', '.join(ACTIONS)}")
                self._save(record, "Rejected", record.message)
                return
            self.request(action, rid, "kubernetes")
        except Busy:
            log.warning("session action ignored: another one is in progress",
                        extra={"action": action})
        except Exception:
            log.exception("session action failed")

    # --- the actions ----------------------------------------------------------------------------

    def _logout(self, record: SessionActionStatus) -> SessionActionStatus:
        st = self._connection.state
        if self.exiting or st.stopping or not st.lease_held:
            return self._save(record, "Rejected", "the worker is stopping" if st.lease_held
                              else "this worker does not hold the bot's Lease")
        self._save(record, "Started", "logging out")
        told_phone = False
        if self._connection.state.state is WorkerState.CONNECTED and self._client.is_connected:
            try:
                self._client.logout()
                told_phone = True
            except Exception as exc:
                return self._save(record, "Failed",
                                  f"WhatsApp refused the logout: {type(exc).__name__}: "
                                  f"{str(exc)[:200]}")
        self._connection.post(lc.LoggedOut("by request"))
        ended = self._wait_session_ended()
        removed = wipe_session(self._cfg.session_path) if ended else []
        if not ended:
            # The Go side still runs on the store: the next process wipes it (finish_pending).
            message = "logged out; the session is wiped when the worker restarts"
            self.exiting = True
            self._request_exit(EXIT_REPAIR)
            return self._save(record, "Started", message)
        message = ("logged out and unlinked from the phone" if told_phone else
                   "logged out (not connected: remove the device in WhatsApp > Linked "
                   "devices too)")
        out = self._save(record, "Succeeded", f"{message}; session wiped ({len(removed)} "
                         "files); restarting into pairing")
        self.exiting = True
        self._request_exit(EXIT_REPAIR)
        return out

    def _restart(self, record: SessionActionStatus) -> SessionActionStatus:
        refused = self._refusal()
        if refused:
            return self._save(record, "Rejected", refused)
        self._connection.post(lc.RestartRequested(record.source))
        return self._save(record, "Succeeded", "the session is being restarted")

    def _new_pairing(self, record: SessionActionStatus,
                     req: PairingRequest | None) -> SessionActionStatus:
        """`req` None (the annotation): the spec's own pairing, QR or code, afresh."""
        st = self._connection.state
        if st.account is not None or has_linked_session(self._cfg.session_path):
            return self._save(record, "Rejected",
                              "the bot is paired with a phone; log out first")
        refused = self._refusal()
        if refused:
            return self._save(record, "Rejected", refused)
        if req is None:
            self._pairing = None
        elif req.method == "code":
            if not req.phone_number:
                return self._save(record, "Rejected", "phoneNumber is required for method code")
            self._pairing = PairingSpec(method="code", phone_number=req.phone_number)
        else:
            self._pairing = PairingSpec(method="qr")
        self._connection.post(lc.RestartRequested("new pairing"))
        return self._save(record, "Succeeded", "a new session is starting; the QR code or "
                          "pairing code follows in status.worker.pairing and the `pairing` "
                          "event")

    def _refusal(self) -> str | None:
        st = self._connection.state
        if self.exiting or st.stopping:
            return "the worker is stopping"
        if not st.lease_held:
            return "this worker does not hold the bot's Lease"
        if st.error_reason:
            return f"the worker cannot connect: {st.error_reason}; fix the spec first"
        if st.state is WorkerState.TEMPORARY_BAN:
            return "the number is temporarily banned; the worker retries when the ban ends"
        return None

    def _wait_session_ended(self) -> bool:
        deadline = time.monotonic() + self._stop_timeout_s
        while time.monotonic() < deadline:
            self._connection.sync(1.0)
            if not self._connection.state.session_running:
                return True
            time.sleep(0.05)
        return False

    def _save(self, record: SessionActionStatus, result: str,
              message: str | None) -> SessionActionStatus:
        out = replace(record, result=result, message=message, at=_now())  # type: ignore[arg-type]
        try:
            save_record(self._record_path, out)
        except OSError as exc:
            log.error("cannot record the session action", extra={"error": str(exc)[:200]})
        self.last = out
        self._publish()
        return out


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
