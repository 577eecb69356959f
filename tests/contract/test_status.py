"""Status derivation: what `kubectl get wab` and the conditions say, from the pod and the
worker's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from wabot_operator.observe import ObservedPod, observe_pod
from wabot_operator.status import (
    CONDITION_TYPES,
    Problem,
    current_operator_status,
    derive_status,
    parse_conditions,
    parse_report,
    status_patch,
)

from wabot.spec import Condition, Phase, WhatsAppBotStatus, WorkerReport

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STARTED = T0 + timedelta(minutes=1)


def pod(phase: str = "Running", **kw: Any) -> ObservedPod:
    base: dict[str, Any] = dict(
        name="wabot-sales", uid="pod-1", owner_uid="bot-1", managed=True, spec_hash="h",
        phase=phase, terminating=False, scheduled=phase != "Pending" or None,
        ready=phase == "Running", node_name="kwok-node-0", started_at=STARTED,
    )
    base.update(kw)
    return ObservedPod(**base)


def report(state: str, at: datetime = STARTED + timedelta(seconds=5), **kw: Any) -> WorkerReport:
    return WorkerReport.model_validate({"state": state, "updatedAt": at.isoformat(), **kw})


def derive(*, suspended: bool = False, p: ObservedPod | None = None,
           r: WorkerReport | None = None, problem: Problem | None = None,
           previous: list[Condition] | None = None, generation: int = 3,
           now: datetime = T0 + timedelta(minutes=5)) -> WhatsAppBotStatus:
    return derive_status(generation=generation, suspended=suspended, pod=p, report=r,
                         problem=problem, previous=previous or [], now=now)


def cond(status: WhatsAppBotStatus, kind: str) -> Condition:
    (c,) = [c for c in status.conditions if c.type == kind]
    return c


# --- phase rules ----------------------------------------------------------------------------


def test_no_pod_is_pending() -> None:
    s = derive()
    assert s.phase == Phase.PENDING
    assert s.pod_name is None
    assert cond(s, "PodScheduled").status == "False"
    assert cond(s, "Ready").status == "False"


def test_pending_pod_is_pending_and_says_why_it_is_not_scheduled() -> None:
    p = pod("Pending", scheduled=False, scheduled_reason="Unschedulable",
            scheduled_message="0/1 nodes are available: 1 Insufficient memory.")
    s = derive(p=p)
    assert s.phase == Phase.PENDING
    c = cond(s, "PodScheduled")
    assert (c.status, c.reason) == ("False", "Unschedulable")
    assert "Insufficient memory" in c.message


def test_running_pod_without_a_report_is_connecting_and_scheduled() -> None:
    s = derive(p=pod())
    assert s.phase == Phase.CONNECTING
    assert cond(s, "PodScheduled").status == "True"
    assert cond(s, "Connected").status == "Unknown"
    assert cond(s, "Paired").status == "Unknown"
    assert cond(s, "Degraded").status == "False"
    assert s.pod_name == "wabot-sales"


@pytest.mark.parametrize(("state", "phase"), [
    ("Starting", Phase.CONNECTING),
    ("Pairing", Phase.PAIRING),
    ("Connecting", Phase.CONNECTING),
    ("Connected", Phase.CONNECTED),
    ("Disconnected", Phase.DISCONNECTED),
    ("LoggedOut", Phase.LOGGED_OUT),
    ("StreamReplaced", Phase.DISCONNECTED),
    ("TemporaryBan", Phase.DISCONNECTED),
    ("Stopped", Phase.DISCONNECTED),
])
def test_worker_state_maps_to_phase(state: str, phase: Phase) -> None:
    assert derive(p=pod(), r=report(state)).phase == phase


def test_connected_bot_is_ready_paired_and_connected() -> None:
    r = report("Connected", account={"jid": "4915100000000@s.whatsapp.net", "pushName": "Sales"})
    s = derive(p=pod(), r=r)
    assert s.phase == Phase.CONNECTED
    assert cond(s, "Ready").status == "True"
    assert cond(s, "Connected").status == "True"
    paired = cond(s, "Paired")
    assert paired.status == "True" and "4915100000000@s.whatsapp.net" in paired.message


def test_connected_but_unready_pod_is_not_ready() -> None:
    s = derive(p=pod(ready=False), r=report("Connected"))
    assert s.phase == Phase.CONNECTED
    assert (cond(s, "Ready").status, cond(s, "Ready").reason) == ("False", "PodNotReady")


def test_a_report_older_than_the_pod_is_from_its_predecessor() -> None:
    """The pod name is fixed; only time tells a new pod from the old one's last report."""
    stale = report("Connected", at=STARTED - timedelta(seconds=1),
                   account={"jid": "1@s.whatsapp.net"})
    s = derive(p=pod(), r=stale)
    assert s.phase == Phase.CONNECTING
    assert cond(s, "Connected").status == "Unknown"
    assert cond(s, "Paired").status == "True"  # the session on the PVC outlives pods


def test_pairing_asks_for_the_scan() -> None:
    r = report("Pairing", pairing={"method": "qr", "qr": "2@abc"})
    s = derive(p=pod(), r=r)
    assert s.phase == Phase.PAIRING
    assert (cond(s, "Paired").status, cond(s, "Paired").reason) == ("False", "AwaitingPairing")


def test_logged_out_is_not_paired() -> None:
    r = report("LoggedOut", account={"jid": "1@s.whatsapp.net"})
    s = derive(p=pod(), r=r)
    assert s.phase == Phase.LOGGED_OUT
    assert (cond(s, "Paired").status, cond(s, "Paired").reason) == ("False", "LoggedOut")


def test_suspend_wins_over_any_pod_state() -> None:
    for p in (None, pod(), pod(terminating=True)):
        s = derive(suspended=True, p=p, r=report("Connected"))
        assert s.phase == Phase.SUSPENDED
        assert cond(s, "Ready").reason == "Suspended"
        assert cond(s, "Connected").status == "False"


def test_failed_or_crash_looping_pod_is_failed_and_degraded() -> None:
    s = derive(p=pod("Failed", status_reason="Evicted", status_message="low on memory"))
    assert s.phase == Phase.FAILED
    d = cond(s, "Degraded")
    assert (d.status, d.reason) == ("True", "PodFailed") and "Evicted" in d.message
    s = derive(p=pod(waiting_reason="CrashLoopBackOff", waiting_message="back-off 40s",
                     restarts=4, ready=False))
    assert s.phase == Phase.FAILED
    assert s.restarts == 4
    assert (cond(s, "Degraded").status, cond(s, "Degraded").reason) == (
        "True", "CrashLoopBackOff")


def test_image_pull_trouble_is_degraded_but_pending() -> None:
    s = derive(p=pod("Pending", waiting_reason="ImagePullBackOff", waiting_message="no such"))
    assert s.phase == Phase.PENDING
    assert (cond(s, "Degraded").status, cond(s, "Degraded").reason) == (
        "True", "ImagePullBackOff")


def test_terminating_pod_is_pending_replacement() -> None:
    assert derive(p=pod(terminating=True), r=report("Connected")).phase == Phase.PENDING


def test_fatal_problem_is_failed_with_its_message() -> None:
    s = derive(p=pod(), problem=Problem("InvalidSpec", "spec.pairing: bad", fatal=True))
    assert s.phase == Phase.FAILED
    d = cond(s, "Degraded")
    assert (d.status, d.reason, d.message) == ("True", "InvalidSpec", "spec.pairing: bad")


def test_non_fatal_problem_degrades_without_changing_the_phase() -> None:
    s = derive(p=pod(), problem=Problem("PodRejected", "quota exceeded"))
    assert s.phase == Phase.CONNECTING
    assert cond(s, "Degraded").reason == "PodRejected"


# --- condition bookkeeping ------------------------------------------------------------------


def test_all_conditions_carry_the_generation() -> None:
    s = derive(p=pod(), generation=7)
    assert [c.type for c in s.conditions] == list(CONDITION_TYPES)
    assert s.observed_generation == 7
    assert {c.observed_generation for c in s.conditions} == {7}


def test_transition_time_moves_only_when_status_moves() -> None:
    first = derive(p=pod(), now=T0)
    later = T0 + timedelta(minutes=10)
    # Same statuses, different reason/message for Ready: the time stays.
    second = derive(p=pod(), r=report("Pairing"), previous=first.conditions, now=later)
    assert cond(second, "Ready").last_transition_time == T0
    assert cond(second, "PodScheduled").last_transition_time == T0
    # Connected went Unknown -> False: its time moves.
    assert cond(second, "Connected").last_transition_time == later
    third = derive(p=pod(), r=report("Connected"), previous=second.conditions,
                   now=later + timedelta(minutes=1))
    assert cond(third, "Ready").last_transition_time == later + timedelta(minutes=1)


def test_patch_holds_only_the_operators_fields() -> None:
    s = derive(p=pod())
    patch = status_patch(s)
    assert set(patch) == {"status"}
    assert set(patch["status"]) == {"phase", "conditions", "observedGeneration", "podName",
                                    "restarts"}
    assert "worker" not in patch["status"]
    assert derive().model_dump(by_alias=True)["podName"] is None
    assert status_patch(derive())["status"]["podName"] is None  # merge patch: removes it


def test_unchanged_status_reads_back_equal_to_the_patch() -> None:
    """What the API server returns (with the worker's subtree beside it) compares equal to
    the patch that wrote it, so a pass with nothing new writes nothing."""
    s = derive(p=pod())
    worker = {"state": "Connecting", "updatedAt": "2026-01-01T00:00:00Z"}
    stored: dict[str, Any] = {**status_patch(s)["status"], "worker": worker}
    assert current_operator_status(stored) == status_patch(s)
    stored["phase"] = "Pending"
    assert current_operator_status(stored) != status_patch(s)


def test_parsing_tolerates_hand_edited_status() -> None:
    raw = {"conditions": [{"type": "Ready"}, {"type": "Paired", "status": "True",
                                              "reason": "Paired",
                                              "lastTransitionTime": "2026-01-01T00:00:00Z"}],
           "worker": {"state": "NoSuchState"}}
    assert [c.type for c in parse_conditions(raw)] == ["Paired"]
    assert parse_report(raw) is None
    assert parse_report(None) is None


def test_observe_pod_reads_the_raw_pod() -> None:
    raw = {
        "metadata": {
            "name": "wabot-sales", "uid": "u1",
            "labels": {"wabot.io/bot": "sales"},
            "annotations": {"wabot.io/pod-spec-hash": "abc"},
            "ownerReferences": [{"kind": "WhatsAppBot", "uid": "bot-1", "controller": True}],
            "creationTimestamp": "2026-01-01T12:00:00Z",
        },
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Running", "startTime": "2026-01-01T12:00:05Z",
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"restartCount": 2,
                                   "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
        },
    }
    p = observe_pod(raw)
    assert (p.owner_uid, p.managed, p.spec_hash, p.restarts) == ("bot-1", True, "abc", 2)
    assert p.crash_looping and p.scheduled is True and p.ready is False
    assert p.started_at == datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert not p.terminating
    raw["metadata"]["deletionTimestamp"] = "2026-01-01T12:10:00Z"
    assert observe_pod(raw).terminating


def test_a_configuration_problem_the_worker_reports_is_degraded_and_failed() -> None:
    """spec.proxy with a URL the worker cannot use: the worker says InvalidProxy; the operator
    makes it a condition a human (or an alert) sees, with the worker's explanation."""
    r = report("Disconnected", errorReason="InvalidProxy",
               lastError="invalid proxy URL (spec.proxy): unsupported proxy scheme 'ftp'")
    s = derive(p=pod(), r=r)
    assert s.phase == Phase.FAILED
    degraded = cond(s, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "InvalidProxy")
    assert "unsupported proxy scheme" in degraded.message
    connected = cond(s, "Connected")
    assert (connected.status, connected.reason) == ("False", "InvalidProxy")
    # A report of the previous pod does not count (the new pod may have a fixed Secret).
    stale = report("Disconnected", at=STARTED - timedelta(seconds=1), errorReason="InvalidProxy")
    assert cond(derive(p=pod(), r=stale), "Degraded").status == "False"
