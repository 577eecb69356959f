"""Every kind of incoming message, from classification to its webhook event (issue 24).

The pipeline hands each filtered MessageEv here: core/inbound.py says what it is; a message
gets its media described or downloaded (media_in.py) and goes on to the commands; a reaction,
an edit, a deletion or a poll vote becomes its own event and is never a command; anything else
is counted and skipped. Poll votes arrive encrypted with the poll's secret, which whatsmeow
keeps in the session store: neonize's `decrypt_poll_vote` reads it, and only a connected
client can (before `connect()` neonize 0.5.2 answers "client is nil"), so that one method is
the seam. The options of the polls the bot has seen are remembered (a bounded map), to name
what a vote chose; for other polls the vote carries the options' hashes only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from wabot.httproutes import Route
from wabot.spec_view import MediaSpec
from wabot.status_view import MediaStorageStatus

from ..adapters.media_store import MediaStore
from ..config import WorkerConfig
from ..core import inbound
from ..core.filters import Inbound
from ..core.outgoing import DEFAULT_RULES, Outgoing
from ..logs import get_logger
from ..metrics import Metrics
from .media_api import MediaApi
from .media_in import MediaIntake

if TYPE_CHECKING:  # event data (wabot/event_view.py): built only when asked for
    from wabot.event_view import MessageData

# wabot.events.MEDIA_TYPES (tests/worker/unit/test_nopydantic_paths.py checks they are equal),
# without importing the event models for every message.
MEDIA_TYPES = frozenset(DEFAULT_RULES)

log = get_logger("incoming")
EXPIRY_EVERY_S = 600.0

class EventSink(Protocol):
    """Where webhook events go (webhooks.WebhookDispatcher): `wants` is cheap, `emit` never
    blocks."""

    def wants(self, event: str) -> bool: ...

    def emit(self, event: str, data: Any) -> str | None: ...


class PollOptions:
    """poll message id -> its options, for the last `capacity` polls seen or sent."""

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._polls: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, poll_id: str, options: list[str]) -> None:
        with self._lock:
            self._polls[poll_id] = tuple(options)
            self._polls.move_to_end(poll_id)
            while len(self._polls) > self._capacity:
                self._polls.popitem(last=False)

    def names(self, poll_id: str, hashes: list[bytes]) -> list[str]:
        """The options whose SHA-256 is among `hashes` (what WhatsApp's vote carries)."""
        with self._lock:
            options = self._polls.get(poll_id, ())
        by_hash = {hashlib.sha256(o.encode()).digest(): o for o in options}
        return [by_hash[h] for h in hashes if h in by_hash]


class InboundEvents:
    def __init__(self, *, metrics: Metrics, events: EventSink | None,
                 media: Callable[[], MediaIntake | None] = lambda: None,
                 decrypt_vote: Callable[[Any], Any] | None = None,
                 polls: PollOptions | None = None,
                 on_storage_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._events = events
        self._media = media
        self._decrypt_vote = decrypt_vote
        self.polls = polls or PollOptions()
        self._on_storage_change = on_storage_change
        self._clock = clock
        self._next_expiry = 0.0
        self._full = False

    def sent(self, _chat: str, out: Outgoing, message_id: str) -> None:
        """After the bot sent `out` (Sender's hook): a poll of its own is remembered, so the
        votes on it name the options chosen, not only their hashes."""
        if out.kind == "poll":
            from wabot.api import Poll

            if isinstance(out.content, Poll):
                self.polls.remember(message_id, list(out.content.options))

    def classify(self, ev: Any, msg: Inbound) -> inbound.Read:
        """What `ev` is (an update's event data is built only if a webhook wants it); never
        raises (a failure here is one more unknown message)."""
        try:
            src = ev.Info.MessageSource
            phone, lid = inbound.identities(src)
            env = inbound.Envelope(chat=msg.chat, sender=msg.sender, push_name=msg.push_name,
                                   message_id=msg.message_id, is_group=msg.is_group,
                                   timestamp_ms=msg.timestamp_ms, sender_phone=phone,
                                   sender_lid=lid)
            return inbound.read(ev.Message, env, ev_flags=ev)
        except Exception:
            log.exception("could not classify a message")
            return inbound.Skipped("unclassifiable")

    def message(self, kind: inbound.Incoming, spec: MediaSpec) -> inbound.Incoming:
        """A `message`: counted by type, its media handled per spec.media (its event data is
        built here only when that needs it)."""
        self._metrics.received_type(kind.type)
        if kind.type == "poll" and kind.envelope is not None:
            self.polls.remember(kind.envelope.message_id, kind.poll_options())
        if kind.type in MEDIA_TYPES and spec.download != "metadata":
            intake = self._media()
            if spec.download == "none":
                kind.replace_data(replace(kind.data, media=None))
            elif intake is not None and kind.data.media is not None:
                kind.replace_data(intake.describe(kind.data, kind.content, spec))
                self._storage_changed()
        self._expire(spec)
        return kind

    def _expire(self, spec: MediaSpec) -> None:
        """Retention also holds for a bot that stopped receiving files: checked at most every
        EXPIRY_EVERY_S seconds, on whatever message comes (the clock first: the store is
        looked up only when a check is due)."""
        now = self._clock()
        if now < self._next_expiry:
            return
        store = self.store
        if store is None:
            return
        self._next_expiry = now + EXPIRY_EVERY_S
        if store.expire(spec.retention_hours * 3600.0):
            self._storage_changed()

    def _storage_changed(self) -> None:
        store = self.store
        if store is None:
            return
        usage = store.usage()
        self._metrics.media_bytes(usage.bytes)
        if usage.full != self._full:
            self._full = usage.full
            self._on_storage_change()

    def media_status(self) -> MediaStorageStatus | None:
        """status.worker.media: None until the bot has kept (or failed to keep) a file."""
        store = self.store
        if store is None:
            return None
        usage = store.usage()
        if not usage.files and not usage.full:
            return None
        return MediaStorageStatus(used_bytes=usage.bytes, files=usage.files,
                                  quota_bytes=usage.quota_bytes, full=usage.full,
                                  reason=usage.reason)

    @property
    def store(self) -> MediaStore | None:
        intake = self._media()
        return intake.store if intake is not None else None

    def routes(self) -> list[Route]:
        """GET /v1/media/{id} when there is a store to serve from."""
        intake = self._media()
        return MediaApi(intake.store).routes() if intake is not None else []

    def media_of(self, data: MessageData | None) -> bytes | None:
        """The kept file of a message (ctx.media()), or None."""
        intake = self._media()
        if intake is None or data is None or data.media is None or not data.media.id:
            return None
        found = intake.store.get(data.media.id)
        return found[1] if found is not None else None

    def update(self, kind: inbound.Read, ev: Any) -> None:
        """A reaction, edit, deletion or poll vote: its own event; anything else is counted
        as skipped, with its reason."""
        if isinstance(kind, inbound.Skipped):
            self._metrics.dropped(kind.reason)
            return
        if isinstance(kind, inbound.PollVote):
            self._poll_vote(kind, ev)
            return
        if isinstance(kind, inbound.Incoming):
            return  # a message: the pipeline's, not an update
        self._metrics.received_type(kind.label)
        events = self._events
        if events is not None and events.wants(kind.event):
            events.emit(kind.event, kind.build())

    def _poll_vote(self, vote: inbound.PollVote, ev: Any) -> None:
        if self._decrypt_vote is None:
            self._metrics.dropped("poll_vote_undecryptable")
            return
        try:
            decrypted = self._decrypt_vote(ev)
            hashes = [bytes(h) for h in list(decrypted.selectedOptions)[:64]]
        except Exception as exc:  # no secret for this poll, a forged vote, not connected
            log.warning("poll vote could not be decrypted",
                        extra={"error_type": type(exc).__name__,
                               "message_id": vote.envelope.message_id})
            self._metrics.dropped("poll_vote_undecryptable")
            return
        self._metrics.received_type("poll_vote")
        if self._events is None or not self._events.wants("poll.vote"):
            return
        from wabot.event_view import PollVoteData

        self._emit("poll.vote", PollVoteData(
            **vote.envelope.fields(), poll_message_id=vote.poll_message_id,
            selected_options=self.polls.names(vote.poll_message_id, hashes),
            selected_hashes=[h.hex() for h in hashes]))

    def _emit(self, name: str, data: Any) -> None:
        if self._events is not None and self._events.wants(name):
            self._events.emit(name, data)


def neonize_decrypt_vote(client: Any) -> Callable[[Any], Any]:
    """neonize's `decrypt_poll_vote`, made callable: 0.5.2 declares its Go function's result
    as a pointer but, unlike every other such function, does not install the errcheck that
    turns it into bytes, so the call raises TypeError before it can decrypt anything. The
    missing errcheck is neonize's own (`consume_bytes_struct`), installed once."""
    from neonize import _binder

    fn = _binder.gocode.DecryptPollVote
    if getattr(fn, "errcheck", None) is None and hasattr(_binder, "consume_bytes_struct"):
        fn.errcheck = _binder.consume_bytes_struct

    def decrypt(ev: Any) -> Any:
        return client.decrypt_poll_vote(ev)

    return decrypt


def inbound_events(cfg: WorkerConfig, client: Any, metrics: Metrics, events: EventSink | None,
                   on_storage_change: Callable[[], None] = lambda: None) -> InboundEvents:
    """A worker's: media kept under its session directory (the bot's volume), fetched through
    the gateway at /v1/bots/{namespace}/{bot}/media/{id} (the worker's own /v1/media/{id}
    outside Kubernetes), downloads and poll votes through its neonize client."""
    prefix = (f"/v1/bots/{cfg.namespace}/{cfg.bot_name}" if cfg.namespace else "/v1")
    intake = MediaIntake(lambda content: client.download_any(content),
                         MediaStore(cfg.session_dir / "media"), metrics,
                         url_for=lambda media_id: f"{prefix}/media/{media_id}")
    return InboundEvents(metrics=metrics, events=events, media=lambda: intake,
                         decrypt_vote=neonize_decrypt_vote(client),
                         on_storage_change=on_storage_change)
