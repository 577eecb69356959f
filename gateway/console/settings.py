"""The console's settings, from WABOT_GATEWAY_CONSOLE_* variables (the chart's gateway.console).

- `WABOT_GATEWAY_CONSOLE` (false): serve the console at /console/.
- `WABOT_GATEWAY_CONSOLE_SECRET`: at least 32 characters; signs the session cookies and CSRF
  tokens. Every replica must have the same one (the chart keeps it in a Secret), so a cookie
  one replica issued is good at any other.
- `WABOT_GATEWAY_CONSOLE_SESSION_HOURS` (8): how long a sign-in lasts. A tenant's session ends
  sooner when its API key is deleted; a cluster user's permissions are asked again on every
  action, but a revoked bearer token is not seen before the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from wabot.console.session import MIN_SECRET
from wabot.settings import ConfigError

PREFIX = "WABOT_GATEWAY_CONSOLE"


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool
    secret: str
    session_hours: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleSettings:
        env = os.environ if env is None else env
        flag = env.get(PREFIX, "").strip().lower()
        if flag not in ("", "true", "false", "1", "0"):
            raise ConfigError(f"{PREFIX}: true or false, not {flag!r}")
        enabled = flag in ("true", "1")
        secret = env.get(f"{PREFIX}_SECRET", "")
        if enabled and len(secret) < MIN_SECRET:
            raise ConfigError(f"{PREFIX}_SECRET: at least {MIN_SECRET} characters are needed "
                              "to sign the console's sessions (the same on every replica)")
        raw_hours = env.get(f"{PREFIX}_SESSION_HOURS", "").strip() or "8"
        try:
            hours = float(raw_hours)
        except ValueError:
            hours = -1.0
        if not 0 < hours <= 24 * 7:
            raise ConfigError(f"{PREFIX}_SESSION_HOURS: a number of hours in (0, 168], "
                              f"not {raw_hours!r}")
        return cls(enabled, secret, hours)
