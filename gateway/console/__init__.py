"""The web console (issue 27): the fleet at a glance and pairing a phone from a browser,
served by the gateway under /console/ when WABOT_GATEWAY_CONSOLE=true.

- access.py: who sees and does what (tenant by API key; cluster user by TokenReview and
  SubjectAccessReview);
- fleet.py: ONE watch on WhatsAppBots per process, shared by every open page;
- actions.py: suspend/resume and the Events naming who did it;
- web.py and stream.py: the HTTP routes and the server-sent-events stream.

What the fleet tiers' console serves too lives in `wabot.console`: the plain-word views, the
signed cookies and CSRF tokens (stateless: any replica accepts any cookie), the QR drawing and
the static page, scripts and style (no external asset, no inline script).
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web

from wabot.settings import ConfigError

from .settings import ConsoleSettings


def install(app: web.Application, tenants: Any, namespaces: tuple[str, ...],
            settings: ConsoleSettings | None = None) -> bool:
    """Mount the console on the gateway's application when it is turned on; False otherwise.
    `tenants` is the gateway (its API-key check); `namespaces` those it serves (empty: all)."""
    if settings is None:
        try:
            settings = ConsoleSettings.from_env()
        except ConfigError as exc:  # a setting, reported like the gateway's own (exit 2)
            print(f"wabot gateway: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    if not settings.enabled:
        return False
    from .routes import mount

    mount(app, tenants, namespaces, settings)
    return True
