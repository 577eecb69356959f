"""Pure drift detection for a bot's supporting objects (PVC, ServiceAccount, Role, RoleBinding,
Lease): given what was rendered and what the API server holds, the smallest merge patch that
brings the object back, or a note saying why it cannot be.

Only what the operator owns is compared: its labels, its owner reference, and a few fields per
kind. Anything else on the object (an admin's extra label, another controller's owner
reference, the Lease's holder written by the worker) is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from wabot.spec import API_GROUP, KIND


@dataclass(frozen=True)
class Drift:
    patch: dict[str, Any] | None = None  # merge patch to send, if any
    recreate: bool = False  # an immutable field differs (RoleBinding.roleRef)
    notes: tuple[str, ...] = field(default=())  # differences that cannot be patched


def _is_bot_ref(ref: Mapping[str, Any], bot: str) -> bool:
    return (
        ref.get("kind") == KIND
        and str(ref.get("apiVersion", "")).startswith(f"{API_GROUP}/")
        and ref.get("name") == bot
    )


def merged_owner_refs(desired: Mapping[str, Any], observed: Mapping[str, Any],
                      bot: str) -> list[dict[str, Any]]:
    """Observed references minus any to this bot (of any uid), plus the rendered ones."""
    ours = list((desired.get("metadata") or {}).get("ownerReferences") or [])
    others = [r for r in (observed.get("metadata") or {}).get("ownerReferences") or []
              if not _is_bot_ref(r, bot)]
    return others + ours


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$")
_FACTORS = {
    None: Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6),
    "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


def parse_quantity(value: str) -> Decimal:
    m = _QUANTITY.match(value.strip())
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(m.group(1)) * _FACTORS[m.group(2)]


# What compute_drift reads of an observed object, per kind (besides metadata's labels,
# ownerReferences, resourceVersion and uid).
_READ: dict[str, tuple[str, ...]] = {
    "Role": ("rules",),
    "RoleBinding": ("roleRef", "subjects"),
    "ServiceAccount": ("automountServiceAccountToken",),
}


def essentials(kind: str, observed: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an observed object that compute_drift (and a recreate) reads: what the
    operator keeps of a listed object, instead of the whole object with its managedFields."""
    meta = observed.get("metadata") or {}
    out: dict[str, Any] = {"metadata": {k: meta[k] for k in (
        "name", "uid", "resourceVersion", "labels", "ownerReferences") if k in meta}}
    for key in _READ.get(kind, ()):
        if key in observed:
            out[key] = observed[key]
    if kind == "PersistentVolumeClaim":
        spec = observed.get("spec") or {}
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        out["spec"] = {"storageClassName": spec.get("storageClassName"),
                       "resources": {"requests": {"storage": storage}}}
    return out


def compute_drift(kind: str, desired: Mapping[str, Any], observed: Mapping[str, Any],
                  bot: str) -> Drift:
    patch: dict[str, Any] = {}
    notes: list[str] = []
    d_meta = desired.get("metadata") or {}
    o_meta = observed.get("metadata") or {}

    labels = {k: v for k, v in (d_meta.get("labels") or {}).items()
              if (o_meta.get("labels") or {}).get(k) != v}
    if labels:
        patch.setdefault("metadata", {})["labels"] = labels
    refs = merged_owner_refs(desired, observed, bot)
    if refs != list(o_meta.get("ownerReferences") or []):
        # resourceVersion makes the list replacement conditional: a concurrent change by the
        # garbage collector or an admin fails with 409 instead of being overwritten.
        patch.setdefault("metadata", {})["ownerReferences"] = refs
        patch["metadata"]["resourceVersion"] = o_meta.get("resourceVersion")

    if kind == "Role":
        if desired.get("rules") != observed.get("rules"):
            patch["rules"] = desired.get("rules")
    elif kind == "RoleBinding":
        if desired.get("roleRef") != observed.get("roleRef"):
            return Drift(recreate=True, notes=("roleRef changed; recreating the RoleBinding",))
        if desired.get("subjects") != observed.get("subjects"):
            patch["subjects"] = desired.get("subjects")
    elif kind == "ServiceAccount":
        key = "automountServiceAccountToken"
        if key in desired and desired.get(key) != observed.get(key):
            patch[key] = desired.get(key)
    elif kind == "PersistentVolumeClaim":
        d_spec = desired.get("spec") or {}
        o_spec = observed.get("spec") or {}
        want = ((d_spec.get("resources") or {}).get("requests") or {}).get("storage")
        have = ((o_spec.get("resources") or {}).get("requests") or {}).get("storage")
        if want and have and want != have:
            if parse_quantity(want) > parse_quantity(have):
                patch["spec"] = {"resources": {"requests": {"storage": want}}}
            elif parse_quantity(want) < parse_quantity(have):
                notes.append(f"the auth volume cannot shrink from {have} to {want}; kept {have}")
        d_class = d_spec.get("storageClassName")
        if d_class is not None and d_class != o_spec.get("storageClassName"):
            notes.append(f"storageClassName is fixed at creation "
                         f"({o_spec.get('storageClassName')}); {d_class} not applied")
    return Drift(patch=patch or None, notes=tuple(notes))
