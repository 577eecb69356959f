"""The pod decision: the rule that keeps one bot to one pod, and so to one WhatsApp session."""

from __future__ import annotations

from typing import Any

import pytest
from wabot_operator.decide import PodAction, decide_pod
from wabot_operator.observe import ObservedPod

BOT_UID = "bot-1"


def pod(**kw: Any) -> ObservedPod:
    base: dict[str, Any] = dict(name="wabot-sales", uid="pod-1", owner_uid=BOT_UID, managed=True,
                                spec_hash="h1", phase="Running", terminating=False)
    base.update(kw)
    return ObservedPod(**base)


def test_missing_pod_is_created() -> None:
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h1", observed=None)
    assert d.action == PodAction.CREATE


def test_up_to_date_pod_is_left_alone() -> None:
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h1", observed=pod())
    assert (d.action, d.reason) == (PodAction.NOTHING, "UpToDate")


def test_changed_spec_deletes_first_and_never_creates_beside_it() -> None:
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h2", observed=pod())
    assert (d.action, d.reason) == (PodAction.DELETE, "SpecChanged")


@pytest.mark.parametrize("desired", ["h1", "h2", None])
def test_a_terminating_pod_is_waited_for_whatever_is_desired(desired: str | None) -> None:
    """Creating before the old pod is gone would run two sessions; deleting again with a
    shorter grace would be a force delete in disguise."""
    d = decide_pod(bot_uid=BOT_UID, desired_hash=desired, observed=pod(terminating=True))
    assert d.action == PodAction.WAIT


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
def test_a_finished_pod_is_replaced(phase: str) -> None:
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h1",
                   observed=pod(phase=phase, status_reason="Evicted"))
    assert (d.action, d.reason) == (PodAction.DELETE, "PodFailed")
    assert "Evicted" in d.message


def test_crash_looping_pod_is_not_replaced() -> None:
    """The kubelet restarts the container with back-off; a new pod would not do better and
    would only churn the session."""
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h1",
                   observed=pod(waiting_reason="CrashLoopBackOff", restarts=7))
    assert d.action == PodAction.NOTHING


def test_suspend_deletes_the_pod_and_then_rests() -> None:
    assert decide_pod(bot_uid=BOT_UID, desired_hash=None, observed=pod()).action == (
        PodAction.DELETE)
    d = decide_pod(bot_uid=BOT_UID, desired_hash=None, observed=None)
    assert (d.action, d.reason) == (PodAction.NOTHING, "Suspended")


def test_a_pod_of_an_earlier_bot_with_the_same_name_is_replaced() -> None:
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h1", observed=pod(owner_uid="old-bot"))
    assert (d.action, d.reason) == (PodAction.DELETE, "StalePod")


def test_a_foreign_pod_holding_the_name_is_never_deleted() -> None:
    d = decide_pod(bot_uid=BOT_UID, desired_hash="h1",
                   observed=pod(managed=False, owner_uid=None, spec_hash=None))
    assert (d.action, d.reason) == (PodAction.NOTHING, "PodNameTaken")


def test_no_decision_ever_creates_while_a_pod_exists() -> None:
    """Exhaustive over the observed states: CREATE only when nothing was observed."""
    for terminating in (False, True):
        for phase in ("Pending", "Running", "Failed", "Succeeded", "Unknown", None):
            for owner in (BOT_UID, "other", None):
                for managed in (True, False):
                    for desired in ("h1", "h2", None):
                        d = decide_pod(bot_uid=BOT_UID, desired_hash=desired, observed=pod(
                            terminating=terminating, phase=phase, owner_uid=owner,
                            managed=managed))
                        assert d.action != PodAction.CREATE
                        if not managed:
                            assert d.action != PodAction.DELETE
