"""`LeaseElector`: holds Lease `wabot-N` with get + conditional patch (the bot's Role allows
nothing else on it), tells the connection when it acquires or loses it, releases it at exit.

The decisions (who may hold it, when a holder must let go) are pure, in `core.lease`; this
module is the thread that asks the API server and keeps the fencing timer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..core import lease as lz
from ..logs import get_logger
from ..metrics import Metrics
from .bot_object import FIELD_MANAGER, short_error
from .kube_client import MERGE_PATCH, ApiError, KubeClient

log = get_logger("kube")


def _lease_path(namespace: str, name: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"


def _time(value: Any) -> datetime | None:
    """A Lease MicroTime ("2030-01-01T00:00:00.000000Z"); None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _record(obj: dict[str, Any]) -> lz.LeaseRecord:
    spec = obj.get("spec") or {}
    return lz.LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        duration_s=spec.get("leaseDurationSeconds"),
        renew_time=_time(spec.get("renewTime")),
        acquire_time=_time(spec.get("acquireTime")),
        transitions=spec.get("leaseTransitions") or 0,
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
    )


class LeaseElector:
    """Holds the bot's Lease. Fencing does not depend on the API answering: a timer armed at
    every successful renewal declares the Lease lost at the renew deadline unless a newer
    renewal has moved it, even while a request is still hanging on a dead network."""

    def __init__(
        self,
        api: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        metrics: Metrics,
        *,
        on_acquired: Callable[[], None],
        on_lost: Callable[[str], None],
        timing: lz.Timing = lz.DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._metrics = metrics
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self.timing = timing
        self._clock = clock
        # A Lease call may not outlast a fraction of the duration (client-go bounds it by the
        # renew deadline); the fence timer covers the rest.
        t = max(1.0, timing.duration_s / 5.0)
        self._timeout = (t, t)
        self._held = False
        # resourceVersion of the record this process last wrote: while the Lease still shows
        # exactly that record, nobody else has written it, so it is still this process's
        # (e.g. after fencing itself through an API outage) even though it names only the pod.
        self._written_rv: str | None = None
        self._last_renewed: float | None = None
        self._obs: lz.Observation | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()  # held/_last_renewed; never held across a request
        self._calls = threading.Lock()  # one Lease request at a time (step vs release)
        self._fence: threading.Timer | None = None
        self._complained: str | None = None

    @property
    def held(self) -> bool:
        return self._held

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-elector", daemon=True)
        self._thread.start()

    def _read(self) -> lz.LeaseRecord:
        obj = self._api.request("GET", _lease_path(self.namespace, self.name),
                                timeout=self._timeout)
        return _record(obj)

    def _patch(self, body: dict[str, Any]) -> lz.LeaseRecord:
        # Conditional: the body carries the resourceVersion the decision was based on, so a
        # write racing another contender's gets 409 Conflict instead of overwriting it.
        obj = self._api.request(
            "PATCH", _lease_path(self.namespace, self.name),
            query={"fieldManager": FIELD_MANAGER}, body=body, content_type=MERGE_PATCH,
            timeout=self._timeout,
        )
        return _record(obj)

    def step(self) -> None:
        """One round: read, decide, maybe write."""
        with self._calls:
            try:
                rec = self._read()
                now = self._clock()
                with self._state:
                    self._obs = lz.observe(self._obs, rec, now)
                    mine = self._held or rec.resource_version == self._written_rv
                    decision = lz.decide(rec, self.identity, self._obs, now,
                                         self.timing.duration_s, held=mine)
                if decision == "wait":
                    if self._held:
                        self._lose(f"taken over by {rec.holder}")
                    elif self._complained != rec.holder:
                        self._complained = rec.holder
                        log.info("waiting for the Lease", extra={"holder": rec.holder})
                    return
                sent_at = self._clock()
                patch = lz.claim_patch(
                    rec, self.identity, datetime.now(UTC), int(self.timing.duration_s),
                    taking_over=not mine,
                )
                written = self._patch(patch)
                with self._state:
                    self._written_rv = written.resource_version
                self._renewed(sent_at)
            except ApiError as exc:
                self._metrics.kube_error("lease_conflict" if exc.status == 409 else "lease")
                if exc.status != 409:
                    log.warning("Lease request failed", extra={"error": short_error(exc)})
            except Exception as exc:
                self._metrics.kube_error("lease")
                log.warning("Lease request failed", extra={"error": short_error(exc)})
        self._check_deadline()

    def _renewed(self, sent_at: float) -> None:
        acquired = False
        with self._state:
            self._last_renewed = sent_at
            if not self._held:
                self._held = acquired = True
                self._complained = None
            if self._fence is not None:
                self._fence.cancel()
            delay = max(0.0, sent_at + self.timing.renew_deadline_s - self._clock())
            self._fence = threading.Timer(delay, self._check_deadline)
            self._fence.daemon = True
            self._fence.start()
        if acquired:
            log.info("acquired the Lease", extra={"lease": self.name})
            self._on_acquired()

    def _check_deadline(self) -> None:
        with self._state:
            if not (self._held and lz.must_fence(self._last_renewed, self._clock(), self.timing)):
                return
        self._lose("could not renew within the deadline")

    def _lose(self, reason: str) -> None:
        with self._state:
            if not self._held:
                return
            self._held = False
            self._last_renewed = None
            if self._fence is not None:
                self._fence.cancel()
        log.warning("lost the Lease; stopping the WhatsApp session", extra={"reason": reason})
        self._on_lost(reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            wait = self.timing.renew_interval_s if self._held else self.timing.retry_interval_s
            last = self._last_renewed
            if self._held and last is not None and self._clock() - last >= wait:
                wait = self.timing.retry_interval_s  # a renewal failed: try again sooner
            self._stop.wait(wait)

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with `release`, clear the holder if it is still this pod. Call only
        after the WhatsApp session has ended: the next pod may connect the moment it sees the
        Lease free."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._state:
            if self._fence is not None:
                self._fence.cancel()
        if release:
            with self._calls:
                try:
                    rec = self._read()
                    # Only a record this process wrote is released: the record names the
                    # pod, and another process of the same name may hold it.
                    if rec.holder == self.identity and rec.resource_version == self._written_rv:
                        self._patch(lz.release_patch(rec))
                        log.info("released the Lease", extra={"lease": self.name})
                except Exception as exc:
                    self._metrics.kube_error("lease_release")
                    log.warning("could not release the Lease", extra={"error": short_error(exc)})
        with self._state:
            self._held = False
