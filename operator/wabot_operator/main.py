"""Entry point: `python -m wabot_operator [options]`, or `wabot_operator.main.run(argv)` from
the `ROLE=operator` switch.

Settings come from WABOT_OPERATOR_* (see config.py); the few flags below override them for a
run by hand. kopf runs in this process's event loop with the handlers of handlers.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import kopf

from wabot_operator.config import ConfigError, OperatorConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wabot-operator",
        description="Reconciles WhatsAppBot resources: one pod per bot, exactly one.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", dest="namespaces", metavar="NS",
                       help="watch this namespace (repeatable; kopf globs allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace")
    p.add_argument("--standalone", action="store_true", default=None,
                   help="run without peering (only ever one replica!)")
    p.add_argument("--peering", metavar="NAME", help="peering object name")
    p.add_argument("--priority", type=int, help="peering priority of this replica")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def load_config(argv: Sequence[str]) -> tuple[OperatorConfig, argparse.Namespace]:
    args = _parser().parse_args(list(argv))
    config = OperatorConfig.from_env()
    overrides: dict[str, object] = {}
    if args.namespaces:
        overrides["namespaces"] = tuple(args.namespaces)
    if args.all_namespaces:
        overrides["namespaces"] = ()
    if args.standalone:
        overrides["standalone"] = True
    if args.peering:
        overrides["peering_name"] = args.peering
    if args.priority is not None:
        overrides["priority"] = args.priority
    if args.verbose:
        overrides["log_level"] = "DEBUG"
    if overrides:
        config = OperatorConfig.model_validate({**config.model_dump(), **overrides})
    return config, args


def configure_logging(config: OperatorConfig) -> None:
    """kopf's formatters: JSON lines carry each record's extra fields (bot, namespace,
    tenant), text lines are for humans at a terminal."""
    kopf.configure(
        verbose=config.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=config.log_format != "json",
    )
    logging.getLogger().setLevel(config.log_level)
    if config.log_level != "DEBUG":
        # kopf logs every watch-event handler call at INFO ("Handler ... succeeded"): with a
        # pod-event handler that is a line per pod change. Its warnings and errors stay.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # every liveness probe
    # The kubernetes client logs every request at DEBUG; keep it for real debugging only.
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def check_credentials() -> None:
    """What kopf's login (handlers.login, kopf.login_via_client) will find: the pod's service
    account, else the kubeconfig. Without either, kopf logs the failure and retries for ever;
    a missing or broken KUBECONFIG is a setting, so it stops the start like the others. Only
    files are read here, nothing is connected to."""
    from kubernetes import config as k8s_config

    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return
    except k8s_config.ConfigException:
        pass
    try:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("KUBECONFIG: no Kubernetes credentials (not in a pod, and the "
                          f"kubeconfig file, default ~/.kube/config, gives none): {reason}"
                          ) from None


def run(argv: Sequence[str] | None = None) -> int:
    """Run the operator until SIGINT/SIGTERM. Returns the process exit code."""
    try:
        config, _ = load_config(sys.argv[1:] if argv is None else argv)
        check_credentials()
    except ConfigError as e:
        print(f"wabot-operator: configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(config)

    import wabot_operator.handlers  # noqa: F401 - registers the kopf handlers

    kopf.run(
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
        standalone=config.standalone,
        priority=config.priority,
        peering_name=None if config.standalone else config.peering_name,
        liveness_endpoint=(f"http://0.0.0.0:{config.health_port}/healthz"
                           if config.health_port else None),
        memo=kopf.Memo(config=config),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
