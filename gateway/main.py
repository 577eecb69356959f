"""`ROLE=gateway` (or `python -m gateway`): serve the send-message API until SIGTERM.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a configuration error (one line on stderr).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from wabot.logs import install_json_handler

from . import __version__
from .config import ConfigError, GatewayConfig


def credentials() -> Any:
    """The API client, before anything listens: a missing or broken kubeconfig (or service
    account) is a setting, reported like the others rather than as the client's traceback.
    Only files are read here, nothing is connected to."""
    try:
        from .kube import api_client

        return api_client()
    except Exception as exc:
        where = ("KUBERNETES_SERVICE_HOST: the pod's service account"
                 if os.environ.get("KUBERNETES_SERVICE_HOST")
                 else "KUBECONFIG: the kubeconfig file (default ~/.kube/config)")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where} gives no Kubernetes credentials: {reason}") from None


def run(argv: Sequence[str] | None = None) -> int:
    args = list(argv or [])
    if args in (["--version"],):
        print(f"wabot gateway {__version__}")
        return 0
    try:
        cfg = GatewayConfig.from_env()
        api = credentials()
    except ConfigError as exc:
        print(f"wabot gateway: {exc}", file=sys.stderr, flush=True)
        return 2
    install_json_handler(cfg.log_level, {"role": "gateway"})
    # aiohttp's access log would record every request line; the metrics count them instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)

    from aiohttp import web

    from .app import Gateway
    from .kube import KubeLookup

    gateway = Gateway(cfg, KubeLookup(api))
    logging.getLogger("wabot.gateway").info(
        "gateway listening on %s:%s (keys in namespace %s)", cfg.host, cfg.port,
        cfg.keys_namespace)
    web.run_app(gateway.app(), host=cfg.host, port=cfg.port, print=None,
                access_log=None, shutdown_timeout=10.0)
    return 0


def main() -> int:
    return run(sys.argv[1:])
