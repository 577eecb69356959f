"""Everything one bot owns, built by the per-object builders of this package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wabot.spec import WhatsAppBotSpec
from wabot_operator.specs.bot import BotRef, RenderDefaults, template_values
from wabot_operator.specs.lease import render_lease
from wabot_operator.specs.pod import render_pod
from wabot_operator.specs.pvc import render_pvc
from wabot_operator.specs.rbac import (
    render_gateway_access,
    render_role,
    render_role_binding,
    render_service_account,
)
from wabot_operator.specs.secret import render_api_secret
from wabot_operator.templates import Templates


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
