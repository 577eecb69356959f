"""The bot's pod: the admin's pod template with the worker's image, environment, resources,
scheduling and auth volume filled in, and the hash that tells when it must be replaced."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from wabot import naming
from wabot.spec import RESERVED_ENV_NAMES, ResourceList, SecretKeyRef, WhatsAppBotSpec
from wabot.workerenv import (
    DATABASE_URL_ORIGIN,
    PROXY_ORIGIN,
    TUNING_NAMES,
    WEBHOOK_ORIGIN,
    FieldRef,
    SecretRef,
    WorkerEnv,
)
from wabot_operator.specs.bot import BotRef, RenderDefaults, with_metadata
from wabot_operator.templates import TemplateError, Templates

WORKER_CONTAINER = "worker"
AUTH_VOLUME = "auth"
DEFAULT_HTTP_PORT = 8080
SPEC_SOURCE = "kubernetes"
TENANT_KEY_PLACEHOLDER = "{serverName}"


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
    """The worker's environment, the contract every tier fills (wabot/workerenv.py): Secrets
    as secretKeyRef, the pod's namespace and name from the downward API. These names are the
    operator's: spec.env cannot override them (the CRD refuses them; _fill_worker drops them
    again for bots written before that rule)."""
    dsn = spec.database.secret_ref if spec.database is not None else database_default(
        defaults.database_secret, spec.server_name)
    return WorkerEnv(
        bot_name=bot.name, bot_id=spec.effective_bot_id(bot.name),
        server_name=spec.server_name,
        namespace=FieldRef("metadata.namespace"), pod_name=FieldRef("metadata.name"),
        lease_name=naming.child_name(bot.name), auth_dir=auth_dir,
        database=SecretRef.of(dsn, DATABASE_URL_ORIGIN) if dsn is not None else None,
        http_port=http_port, spec_source=SPEC_SOURCE,
        webhook_secret=(SecretRef.of(spec.webhook.secret_ref, WEBHOOK_ORIGIN)
                        if spec.webhook is not None else None),
        proxy_url=(SecretRef.of(spec.proxy.secret_ref, PROXY_ORIGIN)
                   if spec.proxy is not None else None),
        admin_env=tuple(defaults.worker_env),
        # optional: a pod must not be held back by the send API (without it, the API is off).
        api_token=SecretRef(naming.api_secret_name(bot.name), naming.API_TOKEN_KEY,
                            optional=True),
    ).kubernetes()


def _fill_worker(container: dict[str, Any], bot: BotRef, spec: WhatsAppBotSpec,
                 defaults: RenderDefaults) -> None:
    """The worker container's image, environment (ours, then the template's and the bot's
    own, which cannot override ours) and resources."""
    container["image"] = spec.image or defaults.worker_image
    ours = pod_env(bot, spec, defaults, auth_dir=_auth_mount_path(container),
                   http_port=_http_port(container))
    # The runtime tuning (GOMAXPROCS, MALLOC_ARENA_MAX) is a default the template or the bot
    # may change; everything else of ours is not.
    reserved = {e["name"] for e in ours if e["name"] not in TUNING_NAMES} | set(
        RESERVED_ENV_NAMES)
    extra: dict[str, dict[str, Any]] = {}
    for e in container.get("env") or []:  # the admin's template env
        if e.get("name") not in reserved:
            extra[e["name"]] = e
    for v in spec.env:  # the bot's own env wins over the template's
        if v.name not in reserved:
            extra[v.name] = {"name": v.name, "value": v.value}
    container["env"] = [e for e in ours if e["name"] not in extra] + list(extra.values())
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


def _fill_pod_spec(pod_spec: dict[str, Any], bot: BotRef, spec: WhatsAppBotSpec) -> None:
    """The pod's ServiceAccount, scheduling fields from the spec, and its auth volume."""
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


def render_pod(bot: BotRef, spec: WhatsAppBotSpec, defaults: RenderDefaults,
               templates: Templates, values: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The bot's pod and its spec hash (also stored in the wabot.io/pod-spec-hash annotation).

    The hash covers everything the pod is made of (spec, labels, annotations), so a change in
    the bot's spec *or* in the admin's pod template rolls the pod; it excludes the owner
    reference, which does not change what runs.
    """
    doc = templates.render("pod.yaml", values)
    with_metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)
    pod_spec = doc.setdefault("spec", {})
    _fill_worker(_worker_container(doc), bot, spec, defaults)
    _fill_pod_spec(pod_spec, bot, spec)
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
