"""Who may do what for one bot: its worker's ServiceAccount, Role and RoleBinding, and the
send-message gateway's read access to this bot's API-token Secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wabot import naming
from wabot.spec import WhatsAppBotSpec
from wabot_operator.specs.bot import BotRef, ServiceAccountRef, with_metadata
from wabot_operator.templates import TemplateError, Templates


def render_service_account(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                           values: Mapping[str, str]) -> dict[str, Any]:
    doc = templates.render("serviceaccount.yaml", values)
    return with_metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)


def render_role(bot: BotRef, spec: WhatsAppBotSpec, templates: Templates,
                values: Mapping[str, str]) -> dict[str, Any]:
    doc = templates.render("role.yaml", values)
    with_metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)
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
    return with_metadata(doc, naming.child_name(bot.name), bot, spec, owned=True)


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
    return (with_metadata(role, name, bot, spec, owned=True),
            with_metadata(binding, name, bot, spec, owned=True))
