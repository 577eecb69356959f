"""The operator's book of the bots' pods: what a pass is told about its bot's pod, from the
start-up LIST and from the watch, whatever order kopf delivers the events in."""

from __future__ import annotations

from typing import Any

from wabot_operator.observe import ObservedPod
from wabot_operator.podbook import LISTED_TRUST, PodBook


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(uid: str = "pod-1", rv: str = "10", **kw: Any) -> ObservedPod:
    base: dict[str, Any] = dict(name="wabot-sales", uid=uid, owner_uid="bot-1", managed=True,
                                spec_hash="h1", phase="Running", terminating=False,
                                resource_version=rv)
    base.update(kw)
    return ObservedPod(**base)


def test_a_listed_pod_is_the_bots_pod_until_the_watch_says_otherwise() -> None:
    book = PodBook(Clock())
    book.listed("ns", "sales", pod())
    assert book.get("ns", "sales") == pod()
    assert book.get("other", "sales") is None  # the same name in another namespace
    book.listed("b-ns", "sales", pod(uid="pod-9"))
    assert book.namespaces() == ["b-ns", "ns"]  # where the start-up listing found bots
    book.watched("MODIFIED", "ns", "sales", pod(rv="11", phase="Failed"))
    assert book.get("ns", "sales") == pod(rv="11", phase="Failed")
    book.watched("DELETED", "ns", "sales", pod(rv="12", phase="Failed"))
    assert book.get("ns", "sales") is None


def test_a_listed_pod_the_watch_never_shows_stops_counting() -> None:
    """Deleted between the operator's LIST and the watch's: the bot must not look alive for
    longer than LISTED_TRUST."""
    clock = Clock()
    book = PodBook(clock)
    book.listed("ns", "sales", pod())
    book.listed("ns", "other", pod(uid="pod-2", name="wabot-other"))
    book.watched(None, "ns", "other", pod(uid="pod-2", name="wabot-other"))  # confirmed
    clock.now += LISTED_TRUST - 1
    assert book.get("ns", "sales") == pod()
    clock.now += 2
    assert book.get("ns", "sales") is None
    assert book.get("ns", "other") == pod(uid="pod-2", name="wabot-other")
    assert len(book) == 1


def test_the_listing_never_overrides_the_watch() -> None:
    book = PodBook(Clock())
    book.watched("ADDED", "ns", "sales", pod(rv="20"))
    book.listed("ns", "sales", pod(rv="5", phase="Pending"))
    assert book.get("ns", "sales") == pod(rv="20")


def test_a_replaced_pods_events_in_any_order_leave_the_new_pod() -> None:
    """kopf handles each pod uid in a task of its own: the old pod's last events and the new
    pod's first ones interleave in any order."""
    old_terminating = ("MODIFIED", pod(uid="old", rv="10", terminating=True))
    old_deleted = ("DELETED", pod(uid="old", rv="12", terminating=True))
    new_added = ("ADDED", pod(uid="new", rv="13", phase="Pending"))
    orders = [
        [old_terminating, old_deleted, new_added],
        [old_terminating, new_added, old_deleted],
        [new_added, old_terminating, old_deleted],
    ]
    for order in orders:
        book = PodBook(Clock())
        for event_type, observed in order:
            book.watched(event_type, "ns", "sales", observed)
        assert book.get("ns", "sales") == new_added[1], order


def test_a_pods_own_events_follow_each_other() -> None:
    book = PodBook(Clock())
    book.watched("ADDED", "ns", "sales", pod(rv="1", phase="Pending"))
    book.watched("MODIFIED", "ns", "sales", pod(rv="2", phase="Running"))
    assert book.get("ns", "sales") == pod(rv="2", phase="Running")


def test_a_pod_labelled_for_a_bot_but_not_named_for_it_is_not_its_pod() -> None:
    """Someone's pod carrying the bot's label (or an old name scheme): the bot's pod is only
    the one the operator names after it."""
    book = PodBook(Clock())
    book.listed("ns", "sales", pod(name="debug-copy"))
    book.watched("ADDED", "ns", "sales", pod(uid="x", name="sales-by-hand"))
    assert book.get("ns", "sales") is None
    book.watched("ADDED", "ns", "sales", pod())
    book.watched("DELETED", "ns", "sales", pod(uid="x", name="sales-by-hand"))
    assert book.get("ns", "sales") == pod()


def test_the_book_remembers_which_pod_the_watch_showed_last() -> None:
    """A pod created, run and deleted between two passes was shown by the watch: its absence
    afterwards is its deletion (issue 22: a second quick delete left the bot without a pod
    until the 60-s resync, the operator still trusting its own record of the create)."""
    book = PodBook(Clock())
    assert not book.shown("ns", "sales", "pod-2")
    book.watched("ADDED", "ns", "sales", pod(uid="pod-2"))
    book.watched("DELETED", "ns", "sales", pod(uid="pod-2", rv="12"))
    assert book.get("ns", "sales") is None
    assert book.shown("ns", "sales", "pod-2")
    assert not book.shown("ns", "sales", "pod-3") and not book.shown("ns", "other", "pod-2")
    book.forget("ns", "sales")
    assert not book.shown("ns", "sales", "pod-2")
