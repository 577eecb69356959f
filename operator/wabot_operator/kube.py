"""The only module that talks to the API server for the reconcile logic: a few calls of the
official `kubernetes` client, returning plain dicts (what the pure functions take).

Every write is a create or a JSON merge patch of named fields; deletes are graceful with a uid
precondition (never a zero grace period), so a delete can only ever hit the object that was
observed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wabot.spec import API_GROUP, API_VERSION, PLURAL

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read (seconds)


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when there was no response)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @classmethod
    def from_api(cls, e: ApiException) -> KubeError:
        status = int(e.status or 0)
        reason = str(e.reason or "")
        message = str(e.body or "")
        try:
            body = json.loads(e.body) if e.body else {}
            message = body.get("message", message)
            reason = body.get("reason", reason)
        except (ValueError, AttributeError):
            pass
        return cls(status, reason, message)


@dataclass(frozen=True)
class _KindOps:
    create: Callable[..., Any]
    read: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]


class Kube:
    """Namespaced CRUD for the kinds a bot owns, plus the bot's status subresource."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        core = client.CoreV1Api(api_client)
        rbac = client.RbacAuthorizationV1Api(api_client)
        coord = client.CoordinationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._ops: dict[str, _KindOps] = {
            "PersistentVolumeClaim": _KindOps(
                core.create_namespaced_persistent_volume_claim,
                core.read_namespaced_persistent_volume_claim,
                core.patch_namespaced_persistent_volume_claim,
                core.delete_namespaced_persistent_volume_claim),
            "ServiceAccount": _KindOps(
                core.create_namespaced_service_account,
                core.read_namespaced_service_account,
                core.patch_namespaced_service_account,
                core.delete_namespaced_service_account),
            "Role": _KindOps(
                rbac.create_namespaced_role,
                rbac.read_namespaced_role,
                rbac.patch_namespaced_role,
                rbac.delete_namespaced_role),
            "RoleBinding": _KindOps(
                rbac.create_namespaced_role_binding,
                rbac.read_namespaced_role_binding,
                rbac.patch_namespaced_role_binding,
                rbac.delete_namespaced_role_binding),
            "Lease": _KindOps(
                coord.create_namespaced_lease,
                coord.read_namespaced_lease,
                coord.patch_namespaced_lease,
                coord.delete_namespaced_lease),
            "Secret": _KindOps(
                core.create_namespaced_secret,
                core.read_namespaced_secret,
                core.patch_namespaced_secret,
                core.delete_namespaced_secret),
            "Pod": _KindOps(
                core.create_namespaced_pod,
                core.read_namespaced_pod,
                core.patch_namespaced_pod,
                core.delete_namespaced_pod),
        }

    @staticmethod
    def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            # A stalled connection must not hang a bot's loop forever (the client's default
            # is no timeout at all).
            response = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
                          **kwargs)
        except ApiException as e:
            raise KubeError.from_api(e) from None
        data = response.data
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return self._call(self._ops[body["kind"]].create, meta["namespace"], dict(body))

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self._call(self._ops[kind].read, name, namespace)

    def patch(self, kind: str, namespace: str, name: str,
              patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self._ops[kind].patch, name, namespace, dict(patch),
                          _content_type=MERGE_PATCH)

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Graceful delete (the object's own grace period); with `uid`, only that object."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
            propagation_policy="Background",
        )
        self._call(self._ops[kind].delete, name, namespace, body=options)

    def patch_bot_status(self, namespace: str, name: str,
                         patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self.custom.patch_namespaced_custom_object_status, API_GROUP,
                          API_VERSION, namespace, PLURAL, name, dict(patch),
                          _content_type=MERGE_PATCH)

    def read_bot(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call(self.custom.get_namespaced_custom_object, API_GROUP, API_VERSION,
                          namespace, PLURAL, name)
