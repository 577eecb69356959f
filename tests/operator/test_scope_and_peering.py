"""Which bots an operator acts on: its namespaces only, and only while it leads the peering
(two replicas never act at once). Also: a bot deleted while no operator runs is finalized
once one comes back."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from wabot_operator.kube import Kube as OperatorKube
from wabot_operator.podbook import PodBook
from wabot_operator.scope import fill_pod_book

from tests.operator.helpers import Cluster, OperatorProcess, eventually
from tests.smoke.test_control_plane import restricted_pod
from wabot import naming

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, annotations={"wabot.io/tenants": "*"},
        labels={"pod-security.kubernetes.io/enforce": "restricted",
                           "wabot.io/test": "true"})))
    eventually(lambda: cluster.core.read_namespaced_service_account("default", name),
               what="default ServiceAccount")
    yield name
    other = Cluster(cluster.api_client, name)
    for bot in other.custom.list_namespaced_custom_object(
            "wabot.io", "v1alpha1", name, "whatsappbots")["items"]:
        with contextlib.suppress(ApiException):
            other.custom.patch_namespaced_custom_object(
                "wabot.io", "v1alpha1", name, "whatsappbots", bot["metadata"]["name"],
                {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json")
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(name)


def test_an_operator_acts_only_in_its_namespaces(
        cluster: Cluster, other_namespace: str,
        operator_factory: Callable[..., OperatorProcess]) -> None:
    other = Cluster(cluster.api_client, other_namespace)
    first = operator_factory().start()  # watches cluster.ns only
    cluster.create_bot("mine")
    other.create_bot("theirs")
    eventually(lambda: cluster.pod("wabot-mine"), what="own namespace served")
    eventually(lambda: (cluster.bot("mine").get("status") or {}).get("phase"),
               what="own bot has status")
    theirs = other.bot("theirs")
    assert not theirs["metadata"].get("finalizers")
    assert "status" not in theirs
    assert other.pod("wabot-theirs") is None

    # An operator for a list of namespaces serves both.
    first.stop()
    both = operator_factory(namespace=f"{cluster.ns},{other_namespace}").start()
    eventually(lambda: other.pod("wabot-theirs"), what="other namespace served")
    cluster.patch_bot("mine", {"suspend": True})
    eventually(lambda: cluster.pod("wabot-mine") is None, what="own namespace still served")
    assert both.healthy()


def test_a_bot_deleted_while_the_operator_is_down_is_finalized_on_return(
        cluster: Cluster, operator_factory: Callable[..., OperatorProcess]) -> None:
    op = operator_factory().start()
    cluster.create_bot("orphan", {"storage": {"retainPolicy": "Delete"}})
    eventually(lambda: cluster.pod("wabot-orphan"), what="pod")
    op.kill()
    cluster.delete_bot("orphan")
    # The finalizer holds it: nothing may lose the volume's policy while no operator runs.
    bot = cluster.bot("orphan")
    assert bot["metadata"]["deletionTimestamp"]
    assert bot["metadata"]["finalizers"] == ["wabot.io/finalizer"]
    operator_factory().start()
    eventually(lambda: cluster.bot_gone("orphan"), what="finalized")
    eventually(lambda: cluster.pvc("wabot-orphan-auth") is None, timeout=90, what="PVC deleted")


def reporters(cluster: Cluster, bot: str) -> set[str]:
    return {e.reporting_instance for e in cluster.events_for(bot)
            if e.reporting_component == "wabot-operator"}


def test_only_the_leading_replica_acts(
        cluster: Cluster, operator_factory: Callable[..., OperatorProcess]) -> None:
    leader = operator_factory(standalone=False,
                              extra_env={"WABOT_OPERATOR_PRIORITY": "200"}).start()
    eventually(lambda: cluster.custom.get_namespaced_custom_object(
        "kopf.dev", "v1", cluster.ns, "kopfpeerings", "wabot").get("status"),
        what="leader registered in the peering object")
    follower = operator_factory(standalone=False,
                                extra_env={"WABOT_OPERATOR_PRIORITY": "100"}).start()
    # kopf starts every replica paused until it has read the peering; the follower sees a
    # higher priority there and stays paused.
    eventually(lambda: len(cluster.custom.get_namespaced_custom_object(
        "kopf.dev", "v1", cluster.ns, "kopfpeerings", "wabot").get("status") or {}) == 2,
        what="both replicas in the peering object")

    cluster.create_bot("led")
    eventually(lambda: cluster.pod("wabot-led"), what="pod")
    eventually(lambda: (cluster.bot("led").get("status") or {}).get("phase") == "Connecting",
               what="Connecting")
    acting = reporters(cluster, "led")
    assert len(acting) == 1, acting
    assert "Resuming operations" not in follower.log()
    assert "/led]" not in follower.log()  # it has not touched the bot

    # The leader leaves; the follower takes over and serves changes.
    leader.stop()
    eventually(lambda: "Resuming operations" in follower.log(), timeout=90,
               what="follower resumed")
    cluster.patch_bot("led", {"image": "registry.invalid/wabot-worker:after"})
    eventually(lambda: (p := cluster.pod("wabot-led")) is not None
               and p.spec.containers[0].image.endswith(":after")
               and not p.metadata.deletion_timestamp, what="follower rolled the pod")
    assert len(reporters(cluster, "led")) == 2


def bot_pod(bot: str) -> dict[str, Any]:
    """A pod as the operator names and labels it for `bot` (admitted under the Restricted Pod
    Security Standard)."""
    pod = restricted_pod(naming.child_name(bot))
    pod["metadata"]["labels"] = {naming.LABEL_BOT: bot}
    return pod


def test_the_start_up_listing_finds_the_pods_of_exactly_the_operators_namespaces(
        cluster: Cluster, other_namespace: str) -> None:
    """What a restarted operator knows of its bots' pods before its first pass: everything in
    the namespaces it watches (literal, a glob, the whole cluster), nothing elsewhere, and
    only pods named for their bot."""
    cluster.core.create_namespaced_pod(cluster.ns, bot_pod("here"))
    cluster.core.create_namespaced_pod(other_namespace, bot_pod("there"))
    stray = bot_pod("here")
    stray["metadata"]["name"] = "here-by-hand"
    cluster.core.create_namespaced_pod(cluster.ns, stray)
    kube = OperatorKube(cluster.api_client)

    def book_of(*patterns: str) -> PodBook:
        book = PodBook()
        fill_pod_book(kube, patterns, book)
        return book

    uid = cluster.pod("wabot-here").metadata.uid  # type: ignore[union-attr]
    literal = book_of(cluster.ns)
    assert (literal.get(cluster.ns, "here") or pytest.fail("no pod")).uid == uid
    assert literal.get(other_namespace, "there") is None
    assert len(literal) == 1

    glob = book_of(f"{other_namespace[:-3]}*", "no-such-namespace")
    assert glob.get(other_namespace, "there") is not None
    assert glob.get(cluster.ns, "here") is None

    everywhere = book_of()
    assert everywhere.get(cluster.ns, "here") is not None
    assert everywhere.get(other_namespace, "there") is not None
