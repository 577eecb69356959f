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

import hmac
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wabot.api import (
    ErrorResponse,
    SendMessageRequest,
    SendMessageResponse,
    valid_idempotency_key,
)

from ..adapters.state_file import StateStore
from ..logs import get_logger
from ..metrics import Metrics
from .sender import Sender

log = get_logger("api")

MAX_BODY = 64 * 1024
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str, **extra: Any) -> Answer:
    body = ErrorResponse(error=code, message=message, **extra)
    headers = {}
    if body.retry_after_seconds is not None:
        headers["Retry-After"] = str(body.retry_after_seconds)
    return Answer(status, body.model_dump_json(by_alias=True, exclude_none=True).encode(),
                  headers)


def validation_error(exc: ValidationError, where: str = "body") -> Answer:
    """422 naming the first offending field, as the API promises."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or where
    if first["type"] == "json_invalid":
        loc = where
    msg = first["msg"]
    return error(422, "invalid_request", f"{loc}: {msg}", field=loc)


def parse_request(body: bytes) -> SendMessageRequest | Answer:
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

    def begin(self, key: str, fingerprint: str) -> Answer | None:
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
            return Answer(int(status), str(body).encode(),
                          {"Idempotent-Replayed": "true"})
        if owner == self._owner:
            return error(409, "request_in_progress",
                         "a request with this Idempotency-Key is still being processed")
        return error(409, "outcome_unknown",
                     "a request with this Idempotency-Key was interrupted by a worker restart; "
                     "whether it was sent is unknown, so it is not sent again")

    def finish(self, key: str, answer: Answer) -> None:
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
    def __init__(self, token: str, sender: Sender, store: IdempotencyStore, metrics: Metrics,
                 *, bot: str, server_name: str) -> None:
        self._token = token.encode()
        self._sender = sender
        self._store = store
        self._metrics = metrics
        self._bot = bot
        self._server_name = server_name

    def authorized(self, headers: Mapping[str, str]) -> bool:
        value = headers.get("authorization") or ""
        scheme, _, presented = value.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token)

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """`headers` with lower-case names."""
        if not self.authorized(headers):
            self._metrics.api_request("unauthorized")
            return error(401, "unauthorized", "a valid bot API token is required")
        parsed = parse_request(body)
        if isinstance(parsed, Answer):
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

    def _send(self, req: SendMessageRequest) -> Answer:
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
            return Answer(200, resp.model_dump_json(by_alias=True).encode())
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


def json_body(answer: Answer) -> Any:
    """For tests and logs."""
    return json.loads(answer.body)
