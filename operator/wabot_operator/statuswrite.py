"""Writing the operator's part of a bot's status: derived by status.py, written only when it
changed, held back while a new or replaced pod is still on its way to Running, and paced when
a whole fleet goes back to Pending at once; a phase change or a new problem becomes an Event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from wabot.spec import Phase, WhatsAppBotStatus
from wabot_operator.kube import Kube, KubeError
from wabot_operator.memory import BotLog, BotMemory, Event, Outcome
from wabot_operator.observe import ObservedPod
from wabot_operator.pacing import SlotPacer
from wabot_operator.specs.bot import BotRef
from wabot_operator.status import (
    Problem,
    current_operator_status,
    derive_status,
    parse_conditions,
    parse_report,
    status_patch,
)

# A new pod goes through a few Pending states (Unschedulable while its volume is being bound,
# scheduled) before it runs, each a moment apart. While the bot stays Pending on a live pod, a
# status change of the conditions alone waits up to this long (from when it was first seen)
# for the step that changes the phase too: usually one write for all of them instead of one
# per step (in a burst of 300 bots the steps were seconds apart). A new bot's first status
# waits as long for its new pod to run (usually one write, Connecting, instead of Pending then
# Connecting). Other phases and the Degraded condition are never held back; the default
# reconcile interval is as long.
PENDING_SETTLE = 10.0
# A running bot's status going back to Pending (its pod gone, or being replaced) takes a
# fleet-wide slot at this multiple of the restart pace. At the default 3 restarts/s a restart
# costs ~3.3 requests (pod, Event, the status when it runs, sometimes the Secret): 10 req/s,
# and the Pending writes 4.5/s on top leave room under 20 req/s for seconds in which several
# new pods report Running together (at twice the pace, 1,000 restarts peaked at 21 requests
# in a second). The last waiting bot shows Pending after ~2/3 of the restart, not ~1/2.
PENDING_WRITE_PACE = 1.5


class StatusWriter:
    def __init__(self, kube: Kube, pending_writes: SlotPacer, clock: Callable[[], float],
                 now: Callable[[], datetime]) -> None:
        self.kube = kube
        self.pending_writes = pending_writes
        self._clock = clock
        self._now = now

    def write(self, bot: Mapping[str, Any], ref: BotRef, generation: int, suspended: bool,
              observed: ObservedPod | None, problem: Problem | None, outcome: Outcome,
              log: BotLog, memory: BotMemory) -> None:
        current = dict(bot.get("status") or {})
        seen = (bot.get("metadata") or {}).get("resourceVersion")
        if memory.written is not None:
            if _older(seen, memory.written_from, memory.written_rv):
                # The watch has not yet delivered the bot as this operator last wrote it: build
                # on that write (not the stale copy), so transition times, the "phase a -> b"
                # event and Degraded warnings are not repeated.
                current.update(memory.written["status"])
            else:
                # It has (the watch only moves forward, so it stays so): the copy is let go.
                # Kept, it was the largest part of a bot's memory, ~2.6 KB (five conditions),
                # 2.5 MiB for 1,000 bots (docs/benchmarks/operator.md).
                memory.written = memory.written_from = memory.written_rv = None
        status = derive_status(
            generation=generation, suspended=suspended, pod=observed,
            report=parse_report(current), problem=problem,
            previous=parse_conditions(current), now=self._now().replace(microsecond=0),
        )
        outcome.phase = status.phase
        patch = status_patch(status)
        if patch == current_operator_status(current):
            memory.held_since = None
            self.pending_writes.forget(ref.uid)
            return
        wait = self._wait(ref, current, patch, status, problem, observed, memory)
        if wait > 0:
            outcome.delay = min(outcome.delay or wait, wait)
            return
        try:
            answer = self.kube.patch_bot_status(ref.namespace, ref.name, patch)
        except KubeError as e:
            if e.not_found:
                return
            outcome.result, outcome.error = "error", str(e)
            log.warning("could not write status: %s", e)
            return
        memory.written, memory.written_from = patch, seen
        memory.held_since = None
        memory.written_rv = (answer.get("metadata") or {}).get("resourceVersion")
        _announce(current, status, problem, outcome, log)

    def _wait(self, ref: BotRef, current: Mapping[str, Any], patch: Mapping[str, Any],
              status: WhatsAppBotStatus, problem: Problem | None, observed: ObservedPod | None,
              memory: BotMemory) -> float:
        """Seconds this write is held back (0: write now)."""
        first = not current.get("phase")
        still_pending = (current.get("phase") == Phase.PENDING.value and _degraded(patch)
                         == _degraded(current_operator_status(current)))
        # A pod this operator just created is usually Running a moment later: a new bot's
        # first status then says Connecting in one write (not Pending, then Connecting), and
        # a restarted bot's may not change at all.
        just_created = (observed is not None and memory.pod is not None
                        and observed.uid == memory.pod.uid
                        and self._clock() - memory.pod_at < PENDING_SETTLE
                        and _degraded(patch)[0] != "True")
        # Likewise while this operator replaces the pod (the old one terminating, then the new
        # one starting): if that is quick, the status need not change at all.
        replacing = (memory.replaced_at is not None
                     and self._clock() - memory.replaced_at < PENDING_SETTLE)
        if problem is None and status.phase == Phase.PENDING and (
                still_pending or just_created or replacing):
            self.pending_writes.forget(ref.uid)  # held here, not paced
            now = self._clock()
            if memory.held_since is None:
                memory.held_since = now
            return memory.held_since + PENDING_SETTLE - now
        if problem is None and status.phase == Phase.PENDING and not first:
            # A bot that ran is going back to Pending: its pod went away or is being replaced.
            # When the whole fleet's pods go (a node pool recycled, an image roll-out), these
            # writes would all come at once: they take fleet-wide slots at PENDING_WRITE_PACE
            # times the restart pace, so each still shows up before its bot's own restart slot.
            return self.pending_writes.wait_for(ref.uid, self._clock())
        # Not a write back to Pending (any more): a slot taken for one is not needed.
        self.pending_writes.forget(ref.uid)
        if not first:
            # A write that does not wait (Connecting once a new pod runs, a problem) uses
            # the same budget: in a mass restart new pods report Running in clumps (13
            # status writes in one second were measured), and the paced Pending writes
            # due next make room for them.
            self.pending_writes.take(self._clock())
        return 0.0


def _announce(current: Mapping[str, Any], status: WhatsAppBotStatus, problem: Problem | None,
              outcome: Outcome, log: BotLog) -> None:
    """The Events (and log lines) for a status just written."""
    old_phase = current.get("phase")
    if old_phase != status.phase:
        log.info("phase %s -> %s", old_phase or "-", status.phase)
        # Pending and Connecting follow the pod, whose Created/PodCreated/PodDeleted Events
        # say it already: an Event (an API request) for them too would double what a new
        # bot or a mass restart costs. Every other phase gets one.
        if status.phase not in (Phase.PENDING, Phase.CONNECTING):
            outcome.events.append(Event("Normal", "PhaseChanged",
                                        f"phase {old_phase or '-'} -> {status.phase}"))
    if problem is not None:
        degraded = next(c for c in status.conditions if c.type == "Degraded")
        before = {c.type: c for c in parse_conditions(current)}.get("Degraded")
        if before is None or (before.reason, before.message) != (degraded.reason,
                                                                  degraded.message):
            outcome.events.append(Event("Warning", problem.reason, problem.message))
            log.warning("%s: %s", problem.reason, problem.message)


def _degraded(patch: Mapping[str, Any]) -> tuple[Any, Any]:
    for c in (patch.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Degraded":
            return c.get("status"), c.get("reason")
    return None, None


def _older(seen: str | None, written_from: str | None, written_rv: str | None) -> bool:
    """Whether the bot `seen` (its resourceVersion) predates this operator's last status write.

    resourceVersions are opaque strings to clients; the API server's are etcd revisions, so
    when both parse as integers the comparison is exact (a bot delivered by the watch before
    or after kopf's own patch of it, or a later change by anyone, is told apart). Otherwise:
    only the very bot the write was computed from counts as older."""
    if seen is not None and written_rv is not None:
        try:
            return int(seen) < int(written_rv)
        except ValueError:
            pass
    return seen == written_from
