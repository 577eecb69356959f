"""What the console changes in the cluster, always as the gateway's ServiceAccount after the
viewer's own permission was checked (access.py), and always with a Kubernetes Event on the bot
naming who did it, so `kubectl describe whatsappbot` shows the console's hand like any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from wabot import naming
from wabot.console.session import Viewer
from wabot.spec import API_GROUP, API_VERSION, KIND, PLURAL

log = logging.getLogger("wabot.gateway.console")
_TIMEOUT = (5.0, 10.0)
COMPONENT = "wabot-console"
MAX_EVENTS = 30


# The worker acts once on each new request id written to these annotations (issue 25; defined
# in botworker/runtime/session_control.py, checked equal by tests/console).
ANNOTATION_ACTION = "wabot.io/session-action"
ANNOTATION_ID = "wabot.io/session-action-id"
SESSION_WORDS = {"restart": "a restart of the WhatsApp connection",
                 "pairing": "a new QR code", "logout": "a log-out (unlink the phone)"}


class ActionError(Exception):
    """An action the API server refused or could not take (its message is for the page)."""


class Actions:
    def __init__(self, api_client: Any) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._instance = os.environ.get("POD_NAME") or os.uname().nodename

    async def _patch(self, namespace: str, name: str, body: dict[str, Any],
                     what: str) -> Any:
        """Merge-patch the bot; the API server's refusal (the viewer's RBAC is checked before,
        the gateway's own here) becomes an ActionError the page shows."""
        try:
            return await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object, API_GROUP, API_VERSION, namespace,
                PLURAL, name, body, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            log.warning("patching %s/%s failed: HTTP %s", namespace, name, exc.status)
            raise ActionError(f"the API server refused the {what} (HTTP {exc.status})") \
                from None

    async def set_suspend(self, viewer: Viewer, namespace: str, name: str,
                          suspend: bool) -> None:
        obj = await self._patch(namespace, name, {"spec": {"suspend": suspend}}, "change")
        verb = "suspended" if suspend else "resumed"
        await self.record(obj, "Suspended" if suspend else "Resumed",
                          f"{verb} from the console by {viewer.describe()}")

    async def session_action(self, viewer: Viewer, obj: dict[str, Any], action: str) -> str:
        """Ask the bot's worker for a session action through the annotations it watches; the
        outcome comes back in status.worker.sessionAction. Returns the request id."""
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        words = SESSION_WORDS[action]
        if action == "pairing" and \
                ((obj.get("spec") or {}).get("pairing") or {}).get("method") == "code":
            # A bot pairing by code gets a new code from a new session in its own mode; the
            # annotation's "pairing" would switch it to a QR code.
            action, words = "restart", "a new pairing code"
        rid = f"console-{uuid.uuid4().hex}"
        body = {"metadata": {"annotations": {ANNOTATION_ACTION: action, ANNOTATION_ID: rid}}}
        patched = await self._patch(namespace, name, body, "request")
        await self.record(patched, "SessionActionRequested",
                          f"{words} requested from the console by "
                          f"{viewer.describe()} (request {rid})")
        return rid

    async def record(self, obj: dict[str, Any], reason: str, message: str) -> None:
        """A Normal Event on the bot; failing to write it is logged, never hidden as success
        of nothing: the action itself already happened."""
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{meta.get('name')}.console-",
                                      namespace=meta.get("namespace")),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{API_GROUP}/{API_VERSION}", kind=KIND, name=meta.get("name"),
                namespace=meta.get("namespace"), uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion")),
            reason=reason, message=message[:1024], type="Normal", count=1,
            first_timestamp=now, last_timestamp=now, event_time=None,
            source=k8s.V1EventSource(component=COMPONENT),
            reporting_component=f"{API_GROUP}/console", reporting_instance=self._instance[:128])
        try:
            await asyncio.to_thread(self._core.create_namespaced_event, str(meta["namespace"]),
                                    event, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            log.warning("recording the Event %s on %s failed: HTTP %s", reason,
                        meta.get("name"), exc.status)

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The recent Events of the bot and of its pod, newest first."""
        out: list[dict[str, Any]] = []
        for kind, obj_name in ((KIND, name), ("Pod", naming.child_name(name))):
            selector = f"involvedObject.kind={kind},involvedObject.name={obj_name}"
            try:
                listing = await asyncio.to_thread(
                    self._core.list_namespaced_event, namespace, field_selector=selector,
                    _request_timeout=_TIMEOUT)
            except ApiException as exc:
                log.warning("listing Events in %s failed: HTTP %s", namespace, exc.status)
                raise ActionError(f"cannot read Events (HTTP {exc.status})") from None
            for ev in listing.items:
                last = ev.last_timestamp or ev.event_time or ev.first_timestamp or \
                    (ev.metadata.creation_timestamp if ev.metadata else None)
                out.append({"object": kind, "type": ev.type, "reason": ev.reason,
                            "message": ev.message or "", "count": ev.count or 1,
                            "last": last.isoformat() if last else None})
        out.sort(key=lambda e: e["last"] or "", reverse=True)
        return out[:MAX_EVENTS]
