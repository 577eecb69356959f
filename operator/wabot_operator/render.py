"""Pure renderers: a WhatsAppBot (name, namespace, uid, validated spec) + the operator's
defaults + the templates → the exact objects the bot should own.

No I/O here, so every rule about what a bot's pod, PVC or Role looks like is tested without a
cluster (tests/unit/test_render.py), and the apply layer only compares and sends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wabot import naming
from wabot.spec import (
    API_GROUP,
    API_VERSION,
    DEFAULT_RESOURCES,
    DEFAULT_STORAGE_SIZE,
    KIND,
    RESERVED_ENV_NAMES,
    ResourceList,
    ResourcesSpec,
    SecretKeyRef,
    WhatsAppBotSpec,
)
from wabot_operator.templates import TemplateError, Templates

WORKER_CONTAINER = "worker"
AUTH_VOLUME = "auth"
DEFAULT_HTTP_PORT = 8080
SPEC_SOURCE = "kubernetes"


@dataclass(frozen=True)
class BotRef:
    """The identity of one WhatsAppBot object."""

    name: str
    namespace: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class RenderDefaults:
    """What the operator supplies when a spec leaves it open."""

    worker_image: str
    database_secret: SecretKeyRef | None = None
    # The send-message gateway's ServiceAccount: when set, each bot gets a Role and RoleBinding
    # that let exactly that ServiceAccount read exactly this bot's API-token Secret.
    gateway_service_account: ServiceAccountRef | None = None
    resources: ResourcesSpec = DEFAULT_RESOURCES
    storage_size: str = DEFAULT_STORAGE_SIZE
    storage_class: str | None = None
    # The admin's settings for every worker (OperatorConfig.worker_env), e.g. webhook egress.
    worker_env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Children:
    """Everything one bot owns, rendered. `pod` is None while the bot is suspended."""

    pvc: dict[str, Any]
    service_account: dict[str, Any]
    role: dict[str, Any]
    role_binding: dict[str, Any]
    lease: dict[str, Any]
    pod: dict[str, Any] | None
    pod_hash: str
    # The Secret with the bot's API token, without its data: the token is random, so the
    # apply layer adds it when it creates the Secret, and never changes it afterwards.
    api_secret: dict[str, Any] | None = None
    gateway_role: dict[str, Any] | None = None
    gateway_role_binding: dict[str, Any] | None = None

    def supporting(self) -> list[dict[str, Any]]:
        """The objects that must exist before the pod (the pod mounts the PVC and runs as the
        ServiceAccount; admission refuses a pod whose ServiceAccount is missing)."""
        out = [self.pvc, self.service_account, self.role, self.role_binding, self.lease]
        out += [o for o in (self.gateway_role, self.gateway_role_binding) if o is not None]
        return out


def template_values(bot: BotRef, spec: WhatsAppBotSpec, defaults: RenderDefaults) -> dict[str, str]:
    child = naming.child_name(bot.name)
    return {
        "bot": bot.name,
        "namespace": bot.namespace,
        "childName": child,
        "pvcName": naming.pvc_name(bot.name),
        "leaseName": child,
        "serverName": spec.server_name,
        "botId": spec.effective_bot_id(bot.name),
        "image": spec.image or defaults.worker_image,
        "storageSize": spec.storage.size or defaults.storage_size,
    }


def _metadata(doc: dict[str, Any], name: str, bot: BotRef, spec: WhatsAppBotSpec,
              owned: bool) -> dict[str, Any]:
    meta = dict(doc.get("metadata") or {})
    meta["name"] = name
    meta["namespace"] = bot.namespace
    meta["labels"] = {**(meta.get("labels") or {}),
                      **naming.bot_labels(bot.name, spec.server_name)}
    if owned:
        meta["ownerReferences"] = [bot.owner_reference()]
    else:
        meta.pop("ownerReferences", None)
    doc["metadata"] = meta
    return doc


def render_api_secret(bot: BotRef, spec: WhatsAppBotSpec) -> dict[str, Any]:
    """`wabot-N-api`: the token the gateway presents to this bot's worker (the worker gets it
    as WABOT_API_TOKEN). Owned by the bot, so it goes with it."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque"}
    return _metadata(doc, naming.api_secret_name(bot.name), bot, spec, owned=True)


def render_gateway_access(bot: BotRef, spec: WhatsAppBotSpec,
                          gateway: ServiceAccountRef) -> tuple[dict[str, Any], dict[str, Any]]:
    """Role + RoleBinding `wabot-N-gateway`: the gateway's ServiceAccount may `get` this bot's
    API-token Secret, by name, and nothing else here (it reads WhatsAppBots and pods through
    the chart's own rules)."""
    name = f"{naming.child_name(bot.name)}-gateway"
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "rules": [{"apiGroups": [""], "resources": ["secrets"],
                   "resourceNames": [naming.api_secret_name(bot.name)], "verbs": ["get"]}],
    }
    binding: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": gateway.name,
                      "namespace": gateway.namespace}],
    }
    return (_metadata(role, name, bot, spec, owned=True),
            _metadata(binding, name, bot, spec, owned=True))


def render_pvc(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
               values: Mapping[str, str], defaults: RenderDefaults) -> dict[str, Any]:
    """With retainPolicy Retain the PVC has no owner: neither the garbage collector nor a
    `kubectl delete --cascade` of the bot can take the session with it."""
    doc = templates.render("pvc.yaml", values)
    _metadata(doc, naming.pvc_name(bot.name), bot, spec,
              owned=spec.storage.retain_policy == "Delete")
    body = doc.setdefault("spec", {})
    size = spec.storage.size or defaults.storage_size
    body.setdefault("resources", {}).setdefault("requests", {})["storage"] = size
    storage_class = spec.storage.storage_class_name or defaults.storage_class
    if storage_class is not None:
        body["storageClassName"] = storage_class
    return doc


def render_service_account(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                           values: Mapping[str, str]) -> dict[str, Any]:
    doc = templates.render("serviceaccount.yaml", values)
    return _metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)


def render_role(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                values: Mapping[str, str]) -> dict[str, Any]:
    doc = templates.render("role.yaml", values)
    _metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)
    # The worker reads no Secret through the API: the kubelet injects the ones its spec names
    # (secretKeyRef), so its token cannot read a Secret, nor a key of one meant for another
    # tenant. A template that grants Secrets anyway is refused.
    for rule in doc.get("rules") or []:
        if "secrets" in (rule.get("resources") or []) or "*" in (rule.get("resources") or []):
            raise TemplateError("role.yaml: the bot's Role must not grant Secrets (the kubelet "
                                "injects the ones it uses)")
    return doc


def render_role_binding(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                        values: Mapping[str, str]) -> dict[str, Any]:
    doc = templates.render("rolebinding.yaml", values)
    return _metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)


def render_lease(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                 values: Mapping[str, str]) -> dict[str, Any]:
    """Created without a holder: the worker acquires it; the operator never touches spec."""
    doc = templates.render("lease.yaml", values)
    doc.setdefault("spec", {})
    return _metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)


def _resource_list(r: ResourceList) -> dict[str, str]:
    return {k: v for k, v in (("cpu", r.cpu), ("memory", r.memory)) if v is not None}


def _worker_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod.get("spec", {}).get("containers") or []
    for c in containers:
        if c.get("name") == WORKER_CONTAINER:
            assert isinstance(c, dict)
            return c
    raise TemplateError(f"pod.yaml: no container named {WORKER_CONTAINER!r}")


def _auth_mount_path(container: Mapping[str, Any]) -> str:
    for m in container.get("volumeMounts") or []:
        if m.get("name") == AUTH_VOLUME:
            return str(m["mountPath"])
    raise TemplateError(f"pod.yaml: the worker container does not mount volume {AUTH_VOLUME!r}")


def _http_port(container: Mapping[str, Any]) -> int:
    for p in container.get("ports") or []:
        if p.get("name") == "http":
            return int(p["containerPort"])
    return DEFAULT_HTTP_PORT


TENANT_KEY_PLACEHOLDER = "{serverName}"


def database_default(ref: SecretKeyRef | None, server_name: str) -> SecretKeyRef | None:
    """The operator's default DSN Secret for a bot of `server_name`. Its key may contain
    `{serverName}` (e.g. `wabot-db:{serverName}`): one Secret then holds one DSN per tenant,
    each of a PostgreSQL role bound to that tenant, since a worker refuses a role of another
    tenant (row-level security follows the login role). A plain key gives every bot the same
    DSN, which fits one tenant only."""
    if ref is None or TENANT_KEY_PLACEHOLDER not in ref.key:
        return ref
    return SecretKeyRef(name=ref.name, key=ref.key.replace(TENANT_KEY_PLACEHOLDER, server_name))


def pod_env(bot: BotRef, spec: WhatsAppBotSpec, defaults: RenderDefaults, *,
            auth_dir: str, http_port: int) -> list[dict[str, Any]]:
    """The worker's environment, as docs/design.md lists it. These names are the operator's:
    spec.env cannot override them (the CRD refuses them; this drops them again for bots
    written before that rule)."""
    env: list[dict[str, Any]] = [
        {"name": "ROLE", "value": "worker"},
        {"name": "BOT_ID", "value": spec.effective_bot_id(bot.name)},
        {"name": "SERVER_NAME", "value": spec.server_name},
        {"name": "WABOT_BOT_NAME", "value": bot.name},
        {"name": "WABOT_NAMESPACE",
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME",
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "WABOT_LEASE_NAME", "value": naming.child_name(bot.name)},
        {"name": "AUTH_DIR", "value": auth_dir},
    ]
    dsn = spec.database.secret_ref if spec.database is not None else database_default(
        defaults.database_secret, spec.server_name)
    if dsn is not None:
        env.append({"name": "DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": dsn.name, "key": dsn.key}}})
    env += [
        {"name": "HTTP_PORT", "value": str(http_port)},
        {"name": "WABOT_SPEC_SOURCE", "value": SPEC_SOURCE},
    ]
    if spec.webhook is not None:
        ref = spec.webhook.secret_ref
        env.append({"name": "WABOT_WEBHOOK_SECRET",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    if spec.proxy is not None:
        ref = spec.proxy.secret_ref
        env.append({"name": "WABOT_PROXY_URL",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    env += [{"name": name, "value": value} for name, value in defaults.worker_env]
    # optional: a pod must not be held back by the send API (without the Secret it is off).
    env.append({"name": "WABOT_API_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": naming.api_secret_name(bot.name),
                                               "key": naming.API_TOKEN_KEY,
                                               "optional": True}}})
    return env


def render_pod(bot: BotRef, spec: WhatsAppBotSpec, defaults: RenderDefaults,
               templates: Templates, values: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The bot's pod and its spec hash (also stored in the wabot.io/pod-spec-hash annotation).

    The hash covers everything the pod is made of (spec, labels, annotations), so a change in
    the bot's spec *or* in the admin's pod template rolls the pod; it excludes the owner
    reference, which does not change what runs.
    """
    doc = templates.render("pod.yaml", values)
    _metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)
    pod_spec = doc.setdefault("spec", {})
    container = _worker_container(doc)
    container["image"] = spec.image or defaults.worker_image
    ours = pod_env(bot, spec, defaults, auth_dir=_auth_mount_path(container),
                   http_port=_http_port(container))
    reserved = {e["name"] for e in ours} | set(RESERVED_ENV_NAMES)
    extra: dict[str, dict[str, Any]] = {}
    for e in container.get("env") or []:  # the admin's template env
        if e.get("name") not in reserved:
            extra[e["name"]] = e
    for v in spec.env:  # the bot's own env wins over the template's
        if v.name not in reserved:
            extra[v.name] = {"name": v.name, "value": v.value}
    container["env"] = ours + list(extra.values())
    # cpu and memory from the spec over the operator's defaults; any other resource the admin's
    # template sets (ephemeral-storage) stays.
    resources = spec.resources.over(defaults.resources)
    template_resources = container.get("resources") or {}
    container["resources"] = {
        key: value
        for key, value in (
            ("requests", {**(template_resources.get("requests") or {}),
                          **_resource_list(resources.requests)}),
            ("limits", {**(template_resources.get("limits") or {}),
                        **_resource_list(resources.limits)}))
        if value
    }
    pod_spec["serviceAccountName"] = naming.child_name(bot.name)
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    if spec.affinity is not None:
        pod_spec["affinity"] = spec.affinity.to_pod()
    if spec.priority_class_name is not None:
        pod_spec["priorityClassName"] = spec.priority_class_name
    for volume in pod_spec.get("volumes") or []:
        if volume.get("name") == AUTH_VOLUME:
            volume["persistentVolumeClaim"] = {"claimName": naming.pvc_name(bot.name)}
            break
    else:
        raise TemplateError(f"pod.yaml: no volume named {AUTH_VOLUME!r}")
    digest = pod_hash(doc)
    doc["metadata"].setdefault("annotations", {})[naming.ANNOTATION_POD_HASH] = digest
    return doc, digest


def pod_hash(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != naming.ANNOTATION_POD_HASH}
    material = {"spec": pod.get("spec"), "labels": meta.get("labels") or {},
                "annotations": annotations}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_children(bot: BotRef, spec: WhatsAppBotSpec, defaults: RenderDefaults,
                    templates: Templates) -> Children:
    values = template_values(bot, spec, defaults)
    pod, digest = render_pod(bot, spec, defaults, templates, values)
    gateway_role = gateway_binding = None
    if defaults.gateway_service_account is not None:
        gateway_role, gateway_binding = render_gateway_access(
            bot, spec, defaults.gateway_service_account)
    return Children(
        pvc=render_pvc(bot, spec, templates, values, defaults),
        service_account=render_service_account(bot, spec, templates, values),
        role=render_role(bot, spec, templates, values),
        role_binding=render_role_binding(bot, spec, templates, values),
        lease=render_lease(bot, spec, templates, values),
        pod=None if spec.suspend else pod,
        pod_hash=digest,
        api_secret=render_api_secret(bot, spec),
        gateway_role=gateway_role,
        gateway_role_binding=gateway_binding,
    )

