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

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from wabot.httproutes import Route
from wabot.httpserver import Request, Response

from ..adapters.state_file import StateStore
from ..core.outgoing import Outgoing
from ..core.recent import Known
from ..logs import get_logger
from ..metrics import Metrics
from . import send_request
from .api_answers import MAX_BODY, error, validation_error
from .sender import Sender, SendOutcome, Transport

if TYPE_CHECKING:  # the API's models (pydantic) load with the first API call, not at start
    from pydantic import BaseModel


log = get_logger("api")

_M = TypeVar("_M", bound="BaseModel")


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


class MessageApi:
    def __init__(self, sender: Sender, store: IdempotencyStore, metrics: Metrics,
                 *, bot: str, server_name: str) -> None:
        self._sender = sender
        self._store = store
        self._metrics = metrics
        self._bot = bot
        self._server_name = server_name

    def routes(self) -> list[Route]:
        """The routes it serves (behind the bot's token: health_server.py). Only the send
        route takes a large body: a multipart upload of the largest file a kind allows."""
        upload = self._sender.media.max_bytes() + MAX_BODY
        return [Route("POST", "/v1/messages", self.handle, max_body=upload, takes_body=True),
                Route("POST", r"/v1/chats/(?P<chat>[^/]{1,64})/read", self.read),
                Route("POST", r"/v1/chats/(?P<chat>[^/]{1,64})/presence", self.presence)]

    def handle(self, req: Request) -> Response:
        parsed = send_request.read(req)
        if isinstance(parsed, Response):
            self._metrics.api_request("invalid")
            return parsed
        return self._once(req, parsed.fingerprint(), lambda: self._send(parsed))

    def read(self, req: Request) -> Response:
        """POST /v1/chats/{chat}/read: read receipts, grouped by who wrote each message."""
        from wabot.api import ReadRequest, chat_jid

        parsed = self._chat_request(req, ReadRequest)
        if isinstance(parsed, Response):
            return parsed
        chat, body = parsed
        by_sender: dict[str, list[str]] = {}
        for i, mid in enumerate(body.message_ids):
            known = self._sender.recent.find(chat, mid)
            author = known.sender if known is not None and known.sender else (
                chat_jid(body.sender) if body.sender else None)
            if author is None and chat.endswith("@g.us"):
                self._metrics.api_request("invalid")
                return error(422, "invalid_request", f"sender: required for messageIds.{i} "
                             "(a group message the bot has not seen)", field="sender")
            by_sender.setdefault(author or chat, []).append(mid)

        def run() -> SendOutcome:
            outcome = SendOutcome("sent")
            for author, ids in by_sender.items():
                outcome = self._sender.chat_action(chat, "read", _reader(chat, author, ids))
                if outcome.result != "sent":
                    break
            return outcome
        return self._once(req, _fingerprint(req), lambda: self._chat_answer(chat, run()))

    def presence(self, req: Request) -> Response:
        """POST /v1/chats/{chat}/presence: typing, recording or paused."""
        from wabot.api import PresenceRequest

        parsed = self._chat_request(req, PresenceRequest)
        if isinstance(parsed, Response):
            return parsed
        chat, state = parsed[0], parsed[1].state
        return self._once(req, _fingerprint(req), lambda: self._chat_answer(
            chat, self._sender.chat_action(chat, "presence",
                                           lambda t: t.chat_presence(chat, state))))

    def _chat_request(self, req: Request, model: type[_M]) -> tuple[str, _M] | Response:
        """A chat route's chat and JSON body, or the 422 that refuses them (counted)."""
        chat = _chat(req)
        body = _model(model, req.body)
        if isinstance(chat, Response):
            self._metrics.api_request("invalid")
            return chat
        if isinstance(body, Response):
            self._metrics.api_request("invalid")
            return body
        return chat, body

    def _once(self, req: Request, fingerprint: str, act: Callable[[], Response]) -> Response:
        """`act` under the request's Idempotency-Key, if it has one (see the docstring)."""
        from wabot.api import valid_idempotency_key

        key = req.headers.get("idempotency-key")
        if key is not None and not valid_idempotency_key(key):
            self._metrics.api_request("invalid")
            return error(422, "invalid_request",
                         "Idempotency-Key: 1 to 255 visible ASCII characters",
                         field="Idempotency-Key")
        if key is not None:
            earlier = self._store.begin(key, fingerprint)
            if earlier is not None:
                replayed = earlier.headers.get("Idempotent-Replayed") == "true"
                self._metrics.api_request("replayed" if replayed else "conflict")
                return earlier
        answer = act()
        if key is not None:
            if answer.status == 200:
                self._store.finish(key, answer)
            else:
                self._store.forget(key)
        return answer

    def _send(self, parsed: send_request.SendRequest) -> Response:
        from wabot.api import SendMessageResponse

        req = parsed.message
        if not self._sender.can_send():
            return self._refused(SendOutcome("not_connected"))
        out = self._outgoing(parsed)
        if isinstance(out, Response):
            return out
        outcome = self._sender.send_outgoing(req.chat, out)
        if outcome.result != "sent":
            return self._refused(outcome)
        self._metrics.api_request("sent")
        resp = SendMessageResponse(
            type=req.kind, message_id=outcome.message_id or "", to=req.chat, bot=self._bot,
            server_name=self._server_name, sent_at=datetime.now(UTC),
        )
        return Response(200, resp.model_dump_json(by_alias=True).encode())

    def _outgoing(self, parsed: send_request.SendRequest) -> Outgoing | Response:
        """The request as an Outgoing, its message ids resolved (404 for one the bot has not
        seen in this chat: WhatsApp would accept it silently and do nothing)."""
        from wabot.api import Delete, Edit, Reaction

        req = parsed.message
        kind = req.kind
        content = getattr(req, kind)
        target = quote = None
        if isinstance(content, Reaction | Edit | Delete):
            target = self._sender.recent.find(req.chat, content.message_id)
            if target is None:
                return self._not_found(f"{kind}.messageId", content.message_id, req.chat)
            refusal = _may_act(kind, target, req.chat)
            if refusal is not None:
                self._metrics.api_request("invalid")
                return error(422, "invalid_request", f"{kind}.messageId: {refusal}",
                             field=f"{kind}.messageId")
        if req.reply_to is not None:
            quote = self._sender.recent.find(req.chat, req.reply_to)
            if quote is None:
                return self._not_found("replyTo", req.reply_to, req.chat)
        upload = parsed.upload
        return Outgoing(kind, content, data=upload.data if upload else None,
                        mimetype=upload.content_type if upload else None,
                        file_name=upload.filename if upload else None,
                        mentions=tuple(req.mentions), target=target, quote=quote,
                        extra={"field": "file" if upload else f"{kind}.url"})

    def _not_found(self, field: str, message_id: str, chat: str) -> Response:
        self._metrics.api_request("not_found")
        return error(404, "message_not_found",
                     f"{field}: this bot has not seen message {message_id} in {chat} (it "
                     "knows the last messages of its chats since it started)", field=field)

    def _chat_answer(self, chat: str, outcome: SendOutcome) -> Response:
        from wabot.api import ChatActionResponse

        if outcome.result != "sent":
            return self._refused(outcome)
        self._metrics.api_request("sent")
        body = ChatActionResponse(chat=chat, bot=self._bot, server_name=self._server_name)
        return Response(200, body.model_dump_json(by_alias=True).encode())

    def _refused(self, outcome: SendOutcome) -> Response:
        """The answer to a send that did not happen, by why."""
        result = outcome.result
        self._metrics.api_request(result)
        if result == "rate_limited":
            wait = max(1, math.ceil(outcome.retry_after_s))
            return error(429, "rate_limited",
                         "the bot's rate limit (spec.rateLimit) allows no message to this chat "
                         "right now", retry_after_seconds=wait)
        if result == "not_connected":
            return error(503, "bot_not_connected",
                         f"bot {self._bot} is not connected to WhatsApp right now")
        if result == "invalid":
            field = outcome.field or "body"
            return error(422, "invalid_request", f"{field}: {outcome.detail}", field=field)
        if result == "busy":
            return error(503, "media_busy", outcome.detail, retry_after_seconds=5)
        if outcome.detail == "MediaToolsMissing":
            return error(503, "media_unavailable", "this worker cannot process video or audio "
                         "(ffmpeg is missing from its image)")
        return error(502, "send_failed", "WhatsApp did not accept the message; retry later")


def _may_act(kind: str, target: Known, chat: str) -> str | None:
    """Why the bot may not edit or delete `target`, or None."""
    if kind == "edit" and not target.from_me:
        return "the bot can edit only its own messages"
    if kind == "edit" and target.kind != "text":
        return "only a text message can be edited"
    if kind == "delete" and not target.from_me and not chat.endswith("@g.us"):
        return "the bot can delete for everyone only its own messages (or, as a group " \
            "admin, a group member's)"
    return None


def _reader(chat: str, author: str, ids: list[str]) -> Callable[[Transport], None]:
    return lambda transport: transport.read_messages(chat, author, ids)


def _chat(req: Request) -> str | Response:
    from wabot.api import RECIPIENT_PATTERN, chat_jid

    chat = unquote(req.params.get("chat", ""))
    if not re.match(RECIPIENT_PATTERN, chat):
        return error(422, "invalid_request", "chat: E.164 digits or a JID", field="chat")
    return chat_jid(chat)


def _model(model: type[_M], body: bytes) -> _M | Response:
    from pydantic import ValidationError

    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        return validation_error(exc)


def _fingerprint(req: Request) -> str:
    return hashlib.sha256(req.path.encode() + b"\0" + req.body).hexdigest()


def json_body(answer: Response) -> Any:
    """For tests and logs."""
    return json.loads(answer.body)
