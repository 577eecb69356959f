"""Finding 8: installed with its defaults, the chart bound the operator's namespaced rules
cluster-wide, so its ServiceAccount could read every Secret and create pods in every namespace
of the cluster. Now the default install manages its release namespace only, a list of
namespaces only those, and the whole cluster only with clusterWide=true.

Each answer comes from the real API server's RBAC: `kubectl auth can-i ... --as
system:serviceaccount:<release namespace>:<operator>` after a real `helm install`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Kube
from tests.packaging.conftest import (  # noqa: F401  (fixtures)
    can_i,
    make_namespace,
    release,
)
from tests.security import record

pytestmark = pytest.mark.cluster
SECTION = record.SECTION

# The chart's tenant-boundary admission policy is cluster-wide; other test sessions may share
# this API server, and RBAC is all these tests look at, so it is left out of these installs.
WITHOUT_ADMISSION = {"policy.admission.enabled": "false"}
# What the operator may never do outside the namespaces it manages.
OUT_OF_SCOPE = (("get", "secrets"), ("list", "secrets"), ("create", "secrets"),
                ("create", "pods"), ("delete", "pods"), ("create", "rolebindings"),
                ("patch", "whatsappbots.wabot.io"))


def test_default_install_reaches_no_namespace_but_its_own(
        kube: Kube, release: Callable[..., str],  # noqa: F811
        make_namespace: Callable[[], str]) -> None:  # noqa: F811
    ns, other = make_namespace(), make_namespace()
    name = release(ns, sets=WITHOUT_ADMISSION)
    operator = f"{ns}/{name}-wabot-operator"
    # What it needs where its bots are (the release namespace, by default).
    assert can_i(kube, operator, "get", "secrets", "-n", ns)
    assert can_i(kube, operator, "create", "pods", "-n", ns)
    assert can_i(kube, operator, "get", f"namespace/{ns}")  # its wabot.io/tenants annotation
    # Nothing in a namespace it was not installed for.
    for verb, resource in OUT_OF_SCOPE:
        assert not can_i(kube, operator, verb, resource, "-n", other), (verb, resource)
    assert not can_i(kube, operator, "get", f"namespace/{other}")
    assert not can_i(kube, operator, "get", "secrets", "--all-namespaces")
    assert not can_i(kube, operator, "create", "pods", "--all-namespaces")
    record.finding("8", "the default chart install's operator in a namespace it does not "
                   "manage", f"{len(OUT_OF_SCOPE) + 1}/{len(OUT_OF_SCOPE) + 1} requests denied "
                   "(Secrets, pods, RoleBindings, bots, its Namespace); cluster-wide only with "
                   "clusterWide=true")


def test_listed_namespaces_are_the_only_ones(
        kube: Kube, release: Callable[..., str],  # noqa: F811
        make_namespace: Callable[[], str]) -> None:  # noqa: F811
    """With watchNamespaces, not even the release namespace (where the database owner's DSN
    lives) is readable."""
    ns, bots, other = make_namespace(), make_namespace(), make_namespace()
    name = release(ns, sets={**WITHOUT_ADMISSION, "watchNamespaces": "{" + bots + "}"})
    operator = f"{ns}/{name}-wabot-operator"
    assert can_i(kube, operator, "get", "secrets", "-n", bots)
    assert can_i(kube, operator, "create", "pods", "-n", bots)
    assert can_i(kube, operator, "get", f"namespace/{bots}")
    for namespace in (ns, other):
        for verb, resource in OUT_OF_SCOPE:
            assert not can_i(kube, operator, verb, resource, "-n", namespace), (
                namespace, verb, resource)
        assert not can_i(kube, operator, "get", f"namespace/{namespace}")


def test_cluster_wide_is_an_explicit_choice(
        kube: Kube, release: Callable[..., str],  # noqa: F811
        make_namespace: Callable[[], str]) -> None:  # noqa: F811
    ns, other = make_namespace(), make_namespace()
    name = release(ns, sets={**WITHOUT_ADMISSION, "clusterWide": "true"})
    operator = f"{ns}/{name}-wabot-operator"
    assert can_i(kube, operator, "get", "secrets", "-n", other)
    assert can_i(kube, operator, "create", "pods", "-n", other)
    assert can_i(kube, operator, "get", f"namespace/{other}")
    # Even then: no list of Secrets (their contents), no wildcard.
    assert not can_i(kube, operator, "list", "secrets", "-n", other)
    assert not can_i(kube, operator, "update", "secrets", "-n", other)
