"""neonize's events, wired to the worker: every registration with the neonize client is here.

A new event type is one row in `NeonizeEvents.register` and one handler below it. Each handler
runs on neonize's callback thread, so it only translates and hands over: session events become
lifecycle events posted to the connection's control thread (`ConnectionManager.post`), a message
or a call goes to the pipeline. neonize swallows exceptions raised in handlers, so each handler
catches its own; `PairPhone` only works once the socket is up, so the pairing code is requested
from the QR callback; `get_me()` aborts the process unless connected, so it is only called when
`is_connected` says so, and never from inside Go's own event dispatch
(../shared/notes/neonize.md).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from wabot.spec_view import PairingSpec

from ..core import lifecycle as lc
from ..logs import get_logger

log = get_logger("connection")


def _enum_name(msg: Any, field: str) -> str:
    try:
        value = getattr(msg, field)
        enum_type = msg.DESCRIPTOR.fields_by_name[field].enum_type
        return str(enum_type.values_by_number[value].name)
    except Exception:
        return "UNKNOWN"


def draw_qr(payload: str, stream: Any = None) -> None:
    """Draw the QR in the terminal (someone is running the worker by hand)."""
    import segno

    segno.make_qr(payload).terminal(out=stream or sys.stdout, compact=True)


class NeonizeEvents:
    """The handlers of one neonize client, and what they remember between events: the QRs and
    pairing code of the current session, and the linked account's own user."""

    def __init__(
        self,
        post: Callable[[lc.Event], None],
        *,
        pairing: Callable[[], PairingSpec],
        on_message: Callable[[Any], Any],
        on_call: Callable[[Any], Any] | None = None,
        clock: Callable[[], float] = time.time,
        terminal: bool = False,
    ) -> None:
        self._post = post
        self._pairing = pairing
        self._on_message = on_message
        self._on_call = on_call
        self._clock = clock
        self._terminal = terminal
        self._qr_count = 0
        self._code_requested = False
        self.own_user: str | None = None
        self._handlers: list[Any] = []
        # More (event type, handler) rows from other modules (runtime/account_events.py).
        self.more: list[tuple[Any, Callable[[Any, Any], None]]] = []

    def register(self, client: Any) -> None:
        """Register with neonize; must happen before the first `connect()`."""
        from neonize.events import (
            CallOfferEv,
            ConnectedEv,
            ConnectFailureEv,
            DisconnectedEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
            StreamReplacedEv,
            TemporaryBanEv,
        )

        pairs: list[tuple[Any, Callable[[Any, Any], None]]] = [
            (MessageEv, self._ev_message),
            (ConnectedEv, self._ev_connected),
            (DisconnectedEv, self._ev_disconnected),
            (LoggedOutEv, self._ev_logged_out),
            (StreamReplacedEv, self._ev_stream_replaced),
            (TemporaryBanEv, self._ev_temporary_ban),
            (ConnectFailureEv, self._ev_connect_failure),
            (PairStatusEv, self._ev_pair_status),
            (CallOfferEv, self._ev_call_offer),
            *self.more,
        ]
        for ev_type, handler in pairs:
            # neonize keeps bound methods as weak references: keep them alive here.
            self._handlers.append(handler)
            client.event(ev_type)(handler)
        self._handlers.append(self._ev_qr)
        client.event.qr(self._ev_qr)

    def session_started(self) -> None:
        """A new session pairs afresh: its first QR lives longer, and a code may be asked."""
        self._qr_count = 0
        self._code_requested = False

    # --- hand-overs -----------------------------------------------------------------------------

    def _ev_message(self, _client: Any, ev: Any) -> None:
        try:
            self._on_message(ev)
        except Exception:
            log.exception("message handoff failed")

    def _ev_call_offer(self, _client: Any, ev: Any) -> None:
        try:
            if self._on_call is not None:
                self._on_call(ev)
        except Exception:
            log.exception("call handoff failed")

    # --- the session ----------------------------------------------------------------------------

    def _ev_connected(self, client: Any, _ev: Any) -> None:
        try:
            self._post(lc.Connected(self._account(getattr(client, "me", None))))
            # get_me() is a call back into Go; not from inside Go's own event dispatch.
            threading.Thread(
                target=self._fetch_account, args=(client,), name="get-me", daemon=True
            ).start()
        except Exception:
            log.exception("connected handler failed")
            self._post(lc.Connected(None))

    def _fetch_account(self, client: Any) -> None:
        try:
            # get_me() aborts the whole process unless the client is connected (neonize.md).
            if not client.is_connected:
                return
            account = self._account(client.get_me())
        except Exception:
            log.exception("could not read the linked account")
            return
        if account is not None:
            self._post(lc.Connected(account))

    def _account(self, me: Any) -> lc.Account | None:
        from neonize.utils.jid import Jid2String

        if me is None or not me.JID.User:
            return None
        jid = str(Jid2String(me.JID))
        self.own_user = jid.split("@", 1)[0].split(":", 1)[0]
        push = me.PushName if isinstance(me.PushName, str) else None
        return lc.Account(jid=jid, push_name=push or None)

    def _ev_disconnected(self, _client: Any, _ev: Any) -> None:
        self._post(lc.Disconnected())

    def _ev_logged_out(self, _client: Any, ev: Any) -> None:
        self._post(lc.LoggedOut(_enum_name(ev, "Reason")))

    def _ev_stream_replaced(self, _client: Any, _ev: Any) -> None:
        self._post(lc.StreamReplaced())

    def _ev_temporary_ban(self, _client: Any, ev: Any) -> None:
        try:
            expire = float(ev.Expire)
        except Exception:
            expire = 3600.0
        self._post(lc.TemporaryBan(_enum_name(ev, "Code"), expire))

    def _ev_connect_failure(self, _client: Any, ev: Any) -> None:
        reason = _enum_name(ev, "Reason")
        message = ev.Message if isinstance(ev.Message, str) else ""
        self._post(lc.ConnectFailure(f"{reason} {message}".strip()))

    # --- pairing --------------------------------------------------------------------------------

    def _ev_pair_status(self, _client: Any, ev: Any) -> None:
        if ev.Error:
            self._post(lc.PairFailed(str(ev.Error)[:300]))
        else:
            log.info("paired with a phone")

    def _ev_qr(self, client: Any, data: bytes) -> None:
        try:
            pairing = self._pairing()
            now = self._clock()
            if pairing.method == "code" and pairing.phone_number:
                if self._code_requested:
                    return
                self._code_requested = True
                self._request_code(client, pairing.phone_number, now)
                return
            ttl = lc.FIRST_QR_TTL_S if self._qr_count == 0 else lc.NEXT_QR_TTL_S
            self._qr_count += 1
            payload = data.decode("utf-8", errors="replace")
            self._post(lc.QrIssued(payload, now + ttl))
            log.info("pairing QR issued; scan it from WhatsApp > Linked devices")
            if self._terminal:
                draw_qr(payload)
        except Exception:
            log.exception("QR handler failed")

    def _request_code(self, client: Any, phone: str, now: float) -> None:
        try:
            # show_push_notification: the phone shows "enter code" as soon as it is issued.
            code = client.PairPhone(phone, True)
        except Exception as exc:
            self._post(lc.PairFailed(f"{type(exc).__name__}: {exc}"[:300]))
            return
        self._post(lc.PairCodeIssued(str(code), now + lc.PAIR_CODE_TTL_S))
        log.info("pairing code issued; enter it in WhatsApp > Linked devices")
        if self._terminal:
            print(f"WhatsApp pairing code: {code}", flush=True)
