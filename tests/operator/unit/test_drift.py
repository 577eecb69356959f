"""Drift of the supporting objects: the smallest patch back to the rendered state, touching
only what the operator owns."""

from __future__ import annotations

from typing import Any

import pytest
from wabot_operator.drift import compute_drift, merged_owner_refs, parse_quantity

OURS = {"apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot", "name": "sales",
        "uid": "new", "controller": True, "blockOwnerDeletion": True}
LABELS = {"wabot.io/bot": "sales", "wabot.io/server": "acme"}


def obj(kind: str = "ServiceAccount", labels: dict[str, str] | None = None,
        refs: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "wabot-sales", "namespace": "t", "resourceVersion": "7"}
    if labels is not None:
        meta["labels"] = labels
    if refs is not None:
        meta["ownerReferences"] = refs
    return {"kind": kind, "metadata": meta, **fields}


def test_identical_object_needs_nothing() -> None:
    d = compute_drift("ServiceAccount", obj(labels=LABELS, refs=[OURS]),
                      obj(labels={**LABELS, "team": "x"}, refs=[OURS]), "sales")
    assert d.patch is None and not d.recreate and not d.notes


def test_missing_labels_are_added_and_others_kept() -> None:
    d = compute_drift("ServiceAccount", obj(labels=LABELS, refs=[OURS]),
                      obj(labels={"team": "x", "wabot.io/bot": "sales"}, refs=[OURS]), "sales")
    assert d.patch == {"metadata": {"labels": {"wabot.io/server": "acme"}}}


def test_owner_ref_of_an_earlier_bot_is_replaced_conditionally() -> None:
    old = {**OURS, "uid": "old"}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "cm"}
    d = compute_drift("Lease", obj(labels=LABELS, refs=[OURS]),
                      obj(labels=LABELS, refs=[other, old]), "sales")
    assert d.patch == {"metadata": {"ownerReferences": [other, OURS], "resourceVersion": "7"}}


def test_retained_pvc_loses_our_owner_ref() -> None:
    d = compute_drift("PersistentVolumeClaim", obj("PersistentVolumeClaim", labels=LABELS),
                      obj("PersistentVolumeClaim", labels=LABELS, refs=[OURS]), "sales")
    assert d.patch == {"metadata": {"ownerReferences": [], "resourceVersion": "7"}}


def test_role_rules_are_restored() -> None:
    rules = [{"apiGroups": ["wabot.io"], "resources": ["whatsappbots"],
              "resourceNames": ["sales"], "verbs": ["get"]}]
    widened = [{**rules[0], "resourceNames": []}]
    d = compute_drift("Role", obj("Role", labels=LABELS, refs=[OURS], rules=rules),
                      obj("Role", labels=LABELS, refs=[OURS], rules=widened), "sales")
    assert d.patch == {"rules": rules}


def test_rolebinding_with_another_role_is_recreated() -> None:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wabot-sales"}
    d = compute_drift("RoleBinding", obj("RoleBinding", labels=LABELS, refs=[OURS], roleRef=ref),
                      obj("RoleBinding", labels=LABELS, refs=[OURS],
                          roleRef={**ref, "kind": "ClusterRole", "name": "admin"}), "sales")
    assert d.recreate


def test_pvc_grows_but_never_shrinks() -> None:
    def pvc(size: str) -> dict[str, Any]:
        return obj("PersistentVolumeClaim", labels=LABELS,
                   spec={"resources": {"requests": {"storage": size}}})
    grow = compute_drift("PersistentVolumeClaim", pvc("1Gi"), pvc("256Mi"), "sales")
    assert grow.patch == {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    shrink = compute_drift("PersistentVolumeClaim", pvc("128Mi"), pvc("256Mi"), "sales")
    assert shrink.patch is None and "cannot shrink" in shrink.notes[0]
    same = compute_drift("PersistentVolumeClaim", pvc("1024Mi"), pvc("1Gi"), "sales")
    assert same.patch is None and not same.notes


@pytest.mark.parametrize(("text", "value"), [
    ("256Mi", 256 * 2**20), ("1Gi", 2**30), ("500m", 0.5), ("2", 2), ("1.5G", 1.5e9),
])
def test_quantities(text: str, value: float) -> None:
    assert float(parse_quantity(text)) == value


def test_merged_refs_keep_foreign_owners() -> None:
    foreign = {"apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot", "name": "other",
               "uid": "o"}
    assert merged_owner_refs(obj(refs=[OURS]), obj(refs=[foreign]), "sales") == [foreign, OURS]
