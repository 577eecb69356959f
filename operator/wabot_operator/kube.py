"""The only module that talks to the API server for the reconcile logic: a few calls of the
official `kubernetes` client, returning plain dicts (what the pure functions take).

Every write is a create or a JSON merge patch of named fields; deletes are graceful with a uid
precondition (never a zero grace period), so a delete can only ever hit the object that was
observed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wabot.spec import API_GROUP, API_VERSION, PLURAL
from wabot_operator import metrics

MERGE_PATCH = "application/merge-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
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
        return cls.from_response(int(e.status or 0), str(e.reason or ""), e.body)

    @classmethod
    def from_response(cls, status: int, reason: str | None, body: Any) -> KubeError:
        """From an HTTP status and the API server's Status object (JSON), if it sent one."""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        reason = str(reason or "")
        message = str(body or "")
        try:
            parsed = json.loads(body) if body else {}
            message = parsed.get("message", message)
            reason = parsed.get("reason", reason)
        except (ValueError, AttributeError):
            pass
        return cls(status, reason, message)


# Collection paths of the kinds a bot owns ({ns}: the namespace), and of namespaces.
_PATHS: dict[str, str] = {
    "Namespace": "/api/v1/namespaces",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "Lease": "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
    "Event": "/api/v1/namespaces/{ns}/events",
}
_BOTS = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{{ns}}/{PLURAL}"
_PATHS["WhatsAppBot"] = _BOTS


class Kube:
    """Namespaced CRUD for the kinds a bot owns, plus the bot's status subresource.

    Requests go through the `kubernetes` client's ApiClient (its configuration: server, TLS,
    client certificates or the refreshed ServiceAccount token; its urllib3 pool), but not
    through the generated per-kind methods: those validate every argument with pydantic and
    walk the body through the model layer, which cost more CPU than the request itself for
    the plain dicts this operator sends and reads."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def _call(self, method: str, path: str, body: Any = None,
              content_type: str = "application/json",
              accept: str = "application/json") -> dict[str, Any]:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self.api_client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
        # A stalled connection must not hang a bot's loop forever (the client's default is no
        # timeout at all).
        try:
            response = self.api_client.call_api(method, url, header_params=headers, body=body,
                                                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as e:  # e.g. a TLS error (status 0)
            metrics.API_REQUESTS.labels(method, str(e.status or 0)).inc()
            raise KubeError.from_api(e) from None
        metrics.API_REQUESTS.labels(method, str(response.status)).inc()
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise KubeError.from_response(response.status, response.reason, data)
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    @staticmethod
    def _one(kind: str, namespace: str, name: str) -> str:
        return f"{_PATHS[kind].format(ns=quote(namespace, safe=''))}/{quote(name, safe='')}"

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        path = _PATHS[body["kind"]].format(ns=quote(meta["namespace"], safe=""))
        return self._call("POST", path, dict(body))

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", self._one(kind, namespace, name))

    def read_metadata(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """The object's metadata only (a PartialObjectMetadata): for a Secret, its labels
        without its data, which the operator has no reason to hold."""
        return self._call("GET", self._one(kind, namespace, name), accept=METADATA_ONLY)

    def list_all(self, kind: str, namespace: str | None, label_selector: str,
                 page: int = 500) -> Iterator[dict[str, Any]]:
        """Every object of `kind` in `namespace` (None: in every namespace) matching the
        selector, a page at a time (a page is parsed and let go before the next is asked
        for)."""
        if namespace is None:
            base = _PATHS[kind].replace("/namespaces/{ns}", "")
        else:
            base = _PATHS[kind].format(ns=quote(namespace, safe=""))
        token = ""
        while True:
            query = f"labelSelector={quote(label_selector, safe='')}&limit={page}"
            if token:
                query += f"&continue={quote(token, safe='')}"
            answer = self._call("GET", f"{base}?{query}")
            yield from answer.get("items") or []
            token = (answer.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def patch(self, kind: str, namespace: str, name: str,
              patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", self._one(kind, namespace, name), dict(patch), MERGE_PATCH)

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Graceful delete (the object's own grace period); with `uid`, only that object."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                   "propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        self._call("DELETE", self._one(kind, namespace, name), options)

    def _bot(self, namespace: str, name: str) -> str:
        return f"{_BOTS.format(ns=quote(namespace, safe=''))}/{quote(name, safe='')}"

    def patch_bot_status(self, namespace: str, name: str,
                         patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", self._bot(namespace, name) + "/status", dict(patch),
                          MERGE_PATCH)

    def read_bot(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", self._bot(namespace, name))
