"""What a pass over one bot carries: the memory kept per bot between passes, the outcome a
pass reports (the kopf layer turns it into Events, a metric and a delay), and the log that
names the bot on every line."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wabot.spec import Phase
from wabot_operator.observe import ObservedPod
from wabot_operator.policy import Facts, Refusal

_log = logging.getLogger("wabot_operator.reconcile")


class BotLog(logging.LoggerAdapter[logging.Logger]):
    """Every line names its bot: `[namespace/bot]` in the text, and `bot`, `namespace`,
    `tenant` as fields of the JSON record (kopf's JSON formatter emits extra fields)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"[{extra.get('namespace')}/{extra.get('bot')}] {msg}", kwargs


def bot_log(bot: Mapping[str, Any]) -> BotLog:
    meta = bot.get("metadata") or {}
    spec = bot.get("spec") or {}
    return BotLog(_log, {"bot": str(meta.get("name")), "namespace": str(meta.get("namespace")),
                         "tenant": str(spec.get("serverName", ""))})


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(slots=True)
class BotMemory:
    """Per-bot memory of one operator process. Losing it (a restart) only costs one extra
    round of reads: it says when the supporting objects were last checked, and for what.
    Slots: one per bot for as long as the bot exists, no attribute dict each."""

    ensured_key: tuple[str, int, str] | None = None  # (uid, generation, templates version)
    ensured_at: float = 0.0
    # The last status patch written, the resourceVersion of the bot it was computed from and
    # the one the API server gave the bot for it: until the watch delivers the bot as written
    # (or newer), passes build on that patch instead of the stale copy of the bot; once it
    # has, all three are None again (statuswrite.py).
    written: dict[str, Any] | None = None
    written_from: str | None = None
    written_rv: str | None = None
    held_since: float | None = None  # a Pending -> Pending change waits since then
    # The pod as this operator last created or read it: the watch may show an older state of
    # it for a while (or not show it yet), and a status derived from that would go backwards.
    pod: ObservedPod | None = None
    pod_at: float = 0.0  # when `pod` was created or read
    pod_seen: bool = False  # the watch has shown that pod (then its absence means deleted)
    template_error: str | None = None  # last one announced
    slot_at: float | None = None  # when this bot last used a fleet-wide restart slot
    replaced_at: float | None = None  # when this operator deleted the pod to replace it
    read_first: bool = False  # the bot ran before: its supporting objects most likely exist
    direct: bool = False  # the last apply failed: check the objects themselves, not a listing
    secret_at: float = -math.inf  # when the API-token Secret was last made sure of
    # spec.suspend and the pod's hash, for (uid, generation, templates version): a bot is
    # passed over many times per change (each step of its pod wakes it), and validating plus
    # rendering was the largest part of a pass's own CPU. The validated spec (~5 KB) and the
    # rendered objects (~15 KB) are not kept: a pass that creates or checks something
    # renders them again.
    # The key also holds the policy facts (facts.py) the spec was checked against, so an
    # admin's change of a namespace annotation or a Secret label re-checks the bot; a refused
    # bot's entry holds its Refusal instead of a hash.
    rendered: tuple[tuple[str, int, str, Facts], bool, str | None, Refusal | None] | None = None
    secret_names: tuple[str, ...] = ()  # the Secrets its spec names (facts to read)
    session_action_announced: str | None = None  # the last session action Event's name


@dataclass
class Outcome:
    result: str = "success"  # success | requeue | error (the metric label)
    events: list[Event] = field(default_factory=list)
    phase: Phase | None = None
    delay: float | None = None  # look again after this many seconds (None: the usual interval)
    error: str | None = None
    # "Kind name" of every object this pass created: one Event and one log line for them all
    # (an Event is an API request; a first pass creates seven objects).
    created: list[str] = field(default_factory=list)
    pod_created: str | None = None  # its entry in `created`, when this pass created the pod
