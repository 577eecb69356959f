"""POST /v1/messages: the worker's half of the send-message API (the gateway is the other).

The gateway authenticates the tenant, finds the bot's pod and forwards the request here with
the bot's own token (WABOT_API_TOKEN, from the Secret `wabot-N-api` the operator made). This
side checks that token, validates the body with the shared model (`wabot.api`), and sends
through the bot's rate-limited sender, so an API message counts against the same per-chat and
per-bot limits as the bot's replies (429 with Retry-After when over them).

Idempotency: a request with an `Idempotency-Key` is recorded before it is sent (state.py,
table api_idempotency: bounded by count and age). A retry of a sent request gets the original
answer back (header `Idempotent-Replayed: true`) and sends nothing; a retry while the first is
still in flight, or with the same key but another body, gets 409. An attempt that did not
send (rate-limited, not connected, failed) forgets its key, so the client can simply retry. A
key whose request was interrupted by a crash of the worker answers 409 "outcome unknown":
wabot never guesses, and never sends twice.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wabot.api import (
    SendMessageRequest,
    SendMessageResponse,
    valid_idempotency_key,
)
from wabot.httproutes import Route
from wabot.httpserver import Request, Response

from ..adapters.state_file import StateStore
from ..logs import get_logger
from ..metrics import Metrics
from .api_answers import error, validation_error
from .sender import Sender

log = get_logger("api")

def parse_request(body: bytes) -> SendMessageRequest | Response:
    try:
        return SendMessageRequest.model_validate_json(body)
    except ValidationError as exc:
        return validation_error(exc)


class IdempotencyStore(StateStore):
    """Keys of this bot's API requests and the answers they got; bounded by `limit` rows and
    `ttl_s` (the oldest go first)."""

    def __init__(self, path: Path, *, limit: int = 10_000, ttl_s: float = 86_400.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(path)
        self._limit = limit
        self._ttl = ttl_s
        self._clock = clock
        # Rows marked pending by another process were interrupted: their outcome is unknown.
        self._owner = uuid.uuid4().hex

    def begin(self, key: str, fingerprint: str) -> Response | None:
        """Claim `key` for a new request: None when claimed, else the answer to give."""
        with self._lock:
            db = self._db()
            now = self._clock()
            db.execute("DELETE FROM api_idempotency WHERE created < ?", (now - self._ttl,))
            row = db.execute("SELECT fingerprint, state, owner, status, body FROM "
                             "api_idempotency WHERE key = ?", (key,)).fetchone()
            if row is None:
                db.execute("INSERT INTO api_idempotency (key, fingerprint, state, owner, "
                           "created) VALUES (?, ?, 'pending', ?, ?)",
                           (key, fingerprint, self._owner, now))
                (count,) = db.execute("SELECT COUNT(*) FROM api_idempotency").fetchone()
                if count > self._limit:
                    db.execute("DELETE FROM api_idempotency WHERE key IN (SELECT key FROM "
                               "api_idempotency WHERE state = 'done' ORDER BY created "
                               "LIMIT ?)", (count - self._limit,))
                return None
        stored_fp, state, owner, status, body = row
        if stored_fp != fingerprint:
            return error(409, "idempotency_key_reused",
                         "this Idempotency-Key was used for a different request",
                         field="Idempotency-Key")
        if state == "done":
            return Response(int(status), str(body).encode(),
                            headers={"Idempotent-Replayed": "true"})
        if owner == self._owner:
            return error(409, "request_in_progress",
                         "a request with this Idempotency-Key is still being processed")
        return error(409, "outcome_unknown",
                     "a request with this Idempotency-Key was interrupted by a worker restart; "
                     "whether it was sent is unknown, so it is not sent again")

    def finish(self, key: str, answer: Response) -> None:
        with self._lock:
            self._db().execute("UPDATE api_idempotency SET state = 'done', status = ?, "
                               "body = ? WHERE key = ?",
                               (answer.status, answer.body.decode(), key))

    def forget(self, key: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM api_idempotency WHERE key = ? AND owner = ?",
                               (key, self._owner))


def recipient_jid(req: SendMessageRequest) -> Any:
    from neonize.utils import build_jid

    user, server = req.jid_parts()
    return build_jid(user, server)


class MessageApi:
    def __init__(self, sender: Sender, store: IdempotencyStore, metrics: Metrics,
                 *, bot: str, server_name: str) -> None:
        self._sender = sender
        self._store = store
        self._metrics = metrics
        self._bot = bot
        self._server_name = server_name

    def routes(self) -> list[Route]:
        """The routes it serves (behind the bot's token: health_server.py)."""
        return [Route("POST", "/v1/messages", self.handle)]

    def handle(self, req: Request) -> Response:
        headers = req.headers
        parsed = parse_request(req.body)
        if isinstance(parsed, Response):
            self._metrics.api_request("invalid")
            return parsed
        key = headers.get("idempotency-key")
        if key is not None and not valid_idempotency_key(key):
            self._metrics.api_request("invalid")
            return error(422, "invalid_request",
                         "Idempotency-Key: 1 to 255 visible ASCII characters",
                         field="Idempotency-Key")
        if key is not None:
            earlier = self._store.begin(key, parsed.fingerprint())
            if earlier is not None:
                replayed = earlier.headers.get("Idempotent-Replayed") == "true"
                self._metrics.api_request("replayed" if replayed else "conflict")
                return earlier
        answer = self._send(parsed)
        if key is not None:
            if answer.status == 200:
                self._store.finish(key, answer)
            else:
                self._store.forget(key)
        return answer

    def _send(self, req: SendMessageRequest) -> Response:
        if not self._sender.can_send():
            self._metrics.api_request("not_connected")
            return error(503, "bot_not_connected",
                         f"bot {self._bot} is not connected to WhatsApp right now")
        outcome = self._sender.send_text(req.chat, recipient_jid(req), req.text)
        if outcome.result == "sent":
            self._metrics.api_request("sent")
            resp = SendMessageResponse(
                message_id=outcome.message_id or "", to=req.chat, bot=self._bot,
                server_name=self._server_name, sent_at=datetime.now(UTC),
            )
            return Response(200, resp.model_dump_json(by_alias=True).encode())
        if outcome.result == "rate_limited":
            self._metrics.api_request("rate_limited")
            wait = max(1, math.ceil(outcome.retry_after_s))
            return error(429, "rate_limited",
                         "the bot's rate limit (spec.rateLimit) allows no message to this chat "
                         "right now", retry_after_seconds=wait)
        if outcome.result == "not_connected":
            self._metrics.api_request("not_connected")
            return error(503, "bot_not_connected",
                         f"bot {self._bot} is not connected to WhatsApp right now")
        self._metrics.api_request("failed")
        return error(502, "send_failed", "WhatsApp did not accept the message; retry later")


def json_body(answer: Response) -> Any:
    """For tests and logs."""
    return json.loads(answer.body)
