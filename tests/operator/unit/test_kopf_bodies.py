"""What the operator's memory use relies on in kopf: a handler's `body` is a view over the very
dict kopf keeps (for a bot's daemon, as long as the bot exists), so dropping
metadata.managedFields there frees it for good (docs/benchmarks/operator.md). If a kopf
upgrade handed handlers a copy instead, this test fails and the saving is gone."""

from __future__ import annotations

from typing import Any, cast

import kopf
from wabot_operator.handlers import drop_managed_fields


def test_the_dict_kopf_keeps_loses_its_managed_fields_and_nothing_else() -> None:
    raw: dict[str, Any] = {
        "apiVersion": "wabot.io/v1alpha1", "kind": "WhatsAppBot",
        "metadata": {"name": "sales", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                     "finalizers": ["wabot.io/finalizer"],
                     "deletionTimestamp": "2026-12-04T20:00:00Z",
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
        "spec": {"serverName": "acme"},
        "status": {"phase": "Connected"},
    }
    body = kopf.Body(cast(kopf.RawBody, raw))
    drop_managed_fields(body)
    assert "managedFields" not in raw["metadata"]
    assert body.metadata.get("finalizers") == ["wabot.io/finalizer"]
    assert body.metadata.get("deletionTimestamp") == "2026-12-04T20:00:00Z"
    assert body.meta.uid == "u1" and body.spec == {"serverName": "acme"}
    drop_managed_fields(body)  # a second event handler on the same dict
    drop_managed_fields(kopf.Body(cast(kopf.RawBody, {"kind": "Pod"})))  # no metadata
