"""The bots' pods as this operator last saw them: (namespace, bot) -> the pod named for the bot.

Filled twice over: once at start-up by a LIST of the operator's own (so that no bot's first
pass after a restart runs before its pod is known: it would take a running bot for one that
lost its pod), then kept up to date by the pods' watch events.

Why not a kopf index, which did this before: kopf holds the processing of every object, of
every watched kind, until every index is filled, so a restarted operator with 1,000 bots kept
the whole listing of pods and bots in memory at once (~40 MiB of decoded objects, a peak of
~190 MiB against the 150 MB target; docs/benchmarks/operator.md). Without an
index kopf lets each listed object go as soon as its handlers ran.

Used from the operator's event loop only (the start-up LIST fills it before kopf's watches
start), so it needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wabot import naming
from wabot_operator.observe import ObservedPod, newer

# How long a pod from the start-up LIST stands for the bot's pod without the watch showing it.
# The watch's own listing follows the start-up LIST within seconds; a pod it never shows was
# deleted in between, and its bot must not look alive for long. Past this time the bot's pass
# sees no pod and creates one; if the pod does exist (a listing slower than this), the create
# meets 409 and the pass reads the pod instead.
LISTED_TRUST = 60.0

DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class _Entry:
    pod: ObservedPod
    listed_at: float | None  # when the start-up LIST showed it; None once the watch has


class PodBook:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        # The uid of the last pod of each bot any watch event was about (deletions included).
        self._shown: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def namespaces(self) -> list[str]:
        return sorted({namespace for namespace, _ in self._entries})

    def listed(self, namespace: str, bot: str, pod: ObservedPod) -> None:
        """A pod from the start-up LIST. Never overrides what the watch has shown."""
        key = (namespace, bot)
        if pod.name == naming.child_name(bot) and key not in self._entries:
            self._entries[key] = _Entry(pod, self._clock())

    def watched(self, event_type: str | None, namespace: str, bot: str,
                pod: ObservedPod) -> None:
        """A watch event (`event_type` None: from the watch's listing). kopf handles each pod
        (by uid) in a task of its own: a deleted pod's last events and its successor's first
        ones can arrive in either order, so a deletion removes only the pod it names, and of
        two pods the newer (by resourceVersion) wins."""
        if pod.name != naming.child_name(bot):
            return  # labelled for the bot, but not the pod the operator makes for it
        key = (namespace, bot)
        self._shown[key] = pod.uid
        entry = self._entries.get(key)
        if event_type == DELETED:
            if entry is not None and entry.pod.uid == pod.uid:
                del self._entries[key]
            return
        if entry is None or entry.listed_at is not None:
            self._entries[key] = _Entry(pod, None)  # the watch's view is the later one
        else:
            self._entries[key] = _Entry(newer(entry.pod, pod) or pod, None)

    def shown(self, namespace: str, bot: str, uid: str) -> bool:
        """Whether the watch has shown the pod `uid` (the last of the bot's pods it showed).
        A pod the operator created and the watch has shown is known to the book: its absence
        there means it is gone, however quickly that happened."""
        return self._shown.get((namespace, bot)) == uid

    def forget(self, namespace: str, bot: str) -> None:
        """The bot is no longer this operator's (deleted, or another replica's)."""
        self._shown.pop((namespace, bot), None)

    def get(self, namespace: str, bot: str) -> ObservedPod | None:
        entry = self._entries.get((namespace, bot))
        if entry is None:
            return None
        if entry.listed_at is not None and self._clock() - entry.listed_at > LISTED_TRUST:
            del self._entries[(namespace, bot)]  # deleted before the watch began
            return None
        return entry.pod
