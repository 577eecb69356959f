"""/v1/session: the bot's WhatsApp session over the API (the gateway forwards
/v1/bots/{namespace}/{bot}/session... here, in every phase: a bot that is not connected is
exactly the one whose session a tenant wants to restart or pair).

- GET  /v1/session           state, account, pairing payload, last error, last action
- POST /v1/session/logout    unlink the phone, wipe the session, restart into pairing
- POST /v1/session/restart   a fresh connection (also out of LoggedOut / StreamReplaced)
- POST /v1/session/pairing   {"method": "qr"} or {"method": "code", "phoneNumber": ...}

An `Idempotency-Key` names the request: sent again, it gets the recorded outcome and nothing
is done twice (session_control.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wabot.httproutes import Route
from wabot.httpserver import Request, Response
from wabot.specread import dump
from wabot.status_view import ActivityStatus, SessionActionStatus

from ..core import lifecycle as lc
from .api_answers import error, validation_error
from .session_control import Busy, SessionControl

if TYPE_CHECKING:
    from wabot.status import SessionAction

_STATUS = {"Succeeded": 202, "Started": 202, "Rejected": 409, "Failed": 502}


class SessionApi:
    def __init__(self, control: SessionControl, state: Callable[[], lc.ConnState],
                 pod_name: str | None,
                 activity: Callable[[], ActivityStatus | None] = lambda: None) -> None:
        self._activity = activity
        self._control = control
        self._state = state
        self._pod = pod_name

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/session", self.view),
            Route("POST", "/v1/session/logout", lambda r: self.act(r, "logout")),
            Route("POST", "/v1/session/restart", lambda r: self.act(r, "restart")),
            Route("POST", "/v1/session/pairing", lambda r: self.act(r, "pairing")),
        ]

    def view(self, _req: Request) -> Response:
        from wabot.account import SessionView  # an API call: the models load on first use

        report = lc.to_report(self._state(), self._pod, time.time())
        last, activity = self._control.last, self._activity()
        body = SessionView.model_validate({
            "state": report.state.value, "lastError": report.last_error,
            "account": dump(report.account) if report.account else None,
            "pairing": dump(report.pairing) if report.pairing else None,
            "sessionAction": dump(last) if last else None,
            "activity": dump(activity) if activity else None})
        return Response(200, body.model_dump_json(by_alias=True, exclude_none=True).encode())

    def act(self, req: Request, action: SessionAction) -> Response:
        from pydantic import ValidationError

        from wabot.account import PairingRequest
        from wabot.api import valid_idempotency_key

        key = req.headers.get("idempotency-key")
        if key is not None and not valid_idempotency_key(key):
            return error(422, "invalid_request",
                         "Idempotency-Key: 1 to 255 visible ASCII characters",
                         field="Idempotency-Key")
        pairing = None
        if action == "pairing":
            try:
                # No body: a QR code (the documented default), whatever the spec pairs by.
                pairing = PairingRequest.model_validate_json(req.body or b"{}")
            except ValidationError as exc:
                return validation_error(exc)
        elif req.body.strip() not in (b"", b"{}"):
            return error(422, "invalid_request", f"{action} takes no body", field="body")
        try:
            outcome, replayed = self._control.request(action, key, "api", pairing)
        except Busy:
            return error(409, "session_action_in_progress",
                         "another session action is being carried out; retry shortly",
                         retry_after_seconds=5)
        return _answer(outcome, replayed)


def _answer(outcome: SessionActionStatus, replayed: bool) -> Response:
    status = _STATUS.get(outcome.result, 500)
    if status >= 400:
        code = "session_action_rejected" if status == 409 else "session_action_failed"
        return error(status, code, outcome.message or outcome.result)
    from wabot.account import SessionActionResponse

    body = SessionActionResponse(request_id=outcome.request_id, action=outcome.action,
                                 result=outcome.result, message=outcome.message,
                                 replayed=replayed)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(status, body.model_dump_json(by_alias=True, exclude_none=True).encode(),
                    headers=headers)
