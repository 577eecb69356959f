"""What the gateway reads from the API server, and nothing more (its RBAC, in the chart):

- WhatsAppBots (get): a bot's tenant (spec.serverName), phase and pod name (status);
- pods (get): the bot pod's IP;
- Secrets `wabot-N-api` (get, each by name through the per-bot Role the operator makes): the
  bot's API token;
- Secrets labelled `wabot.io/api-key=true` in its keys namespace (list, with that label
  selector): the tenants' API keys, stored as SHA-256 hashes (`key-sha256`) with the tenant
  (`tenant`), never the keys. RBAC cannot limit a list to a label, so the chart gives the keys
  a namespace of their own (not the release namespace, which holds the database owner's DSN)
  and grants Secrets there only; a Secret without the label is never used as a key, even if
  the API server returned it.

The official client is synchronous; the app calls these in threads. Each returns plain data.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from wabot import naming
from wabot.spec import API_GROUP, API_VERSION, NAME_PATTERN, PLURAL


def api_client() -> Any:
    """The gateway's client of the API server: its service account in a pod, else KUBECONFIG
    (the one place the gateway and its console build one)."""
    from kubernetes import config as k8s_config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return k8s.ApiClient()
    return k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG"))

API_KEY_LABEL = f"{API_GROUP}/api-key"
TENANT_KEY = "tenant"
HASH_KEY = "key-sha256"
_TIMEOUT = (5.0, 10.0)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class BotView:
    tenant: str
    phase: str | None
    pod_name: str


def _decode(data: Mapping[str, Any] | None, key: str) -> str | None:
    raw = (data or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw).decode().strip()
    except (ValueError, UnicodeDecodeError):
        return None


class KubeLookup:
    def __init__(self, api_client: Any) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)

    def bot(self, namespace: str, name: str) -> BotView | None:
        try:
            obj: dict[str, Any] = self._custom.get_namespaced_custom_object(  # type: ignore[assignment]
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=_TIMEOUT)
        except ApiException as e:
            # 403: a namespace this gateway may not read. Answered like a missing bot, so the
            # client learns nothing about namespaces or bots outside the gateway's reach.
            if e.status in (403, 404):
                return None
            raise
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        return BotView(tenant=str(spec.get("serverName", "")), phase=status.get("phase"),
                       pod_name=status.get("podName") or naming.child_name(name))

    def pod_ip(self, namespace: str, name: str) -> str | None:
        try:
            pod = self._core.read_namespaced_pod(name, namespace, _request_timeout=_TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        if (pod.metadata is not None and pod.metadata.deletion_timestamp is not None) or \
                pod.status is None:
            return None
        return str(pod.status.pod_ip) if pod.status.pod_ip else None

    def bot_token(self, namespace: str, bot: str) -> str | None:
        try:
            secret = self._core.read_namespaced_secret(naming.api_secret_name(bot), namespace,
                                                       _request_timeout=_TIMEOUT)
        except ApiException as e:
            if e.status in (403, 404):
                return None
            raise
        return _decode(secret.data, naming.API_TOKEN_KEY)

    def api_keys(self, namespace: str) -> dict[str, str]:
        """sha256 hex of each key → its tenant. Malformed Secrets are skipped."""
        secrets = self._core.list_namespaced_secret(
            namespace, label_selector=f"{API_KEY_LABEL}=true", _request_timeout=_TIMEOUT)
        out: dict[str, str] = {}
        for secret in secrets.items:
            labels = (secret.metadata.labels if secret.metadata is not None else None) or {}
            if labels.get(API_KEY_LABEL) != "true":
                continue
            tenant = _decode(secret.data, TENANT_KEY)
            digest = (_decode(secret.data, HASH_KEY) or "").lower()
            if tenant and _NAME.match(tenant) and _HEX64.match(digest):
                out[digest] = tenant
        return out
