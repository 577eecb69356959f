"""`ROLE=worker`: run one bot until SIGTERM. `wabot_cli` calls `run(argv)`.

Exit codes: 0 after a clean (or timed-out but bounded) shutdown, 2 for configuration errors
(printed as one line on stderr: a CrashLoopBackOff with a readable `kubectl logs`), 1 for an
unexpected failure at start, 3 after a logout (runtime/session_control.py EXIT_REPAIR: the
session is wiped; the restarted process pairs afresh).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__, lazydeps
from .config import ConfigError, WorkerConfig, load_config, register_secrets
from .logs import configure_logging, get_logger

log = get_logger("main")
PREFIX = "wabot worker"


def _fail(message: str, code: int = 2) -> int:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)
    return code


def _hard_exit(timeout_s: float) -> None:
    logging.getLogger("wabot.worker.main").error(
        "shutdown exceeded its time budget; exiting now", extra={"timeout_s": timeout_s}
    )
    for h in logging.getLogger().handlers:
        h.flush()
    os._exit(0)


def _initial_kube_object(cfg: WorkerConfig, api: Any, stop: threading.Event) -> dict[str, Any]:
    """The bot's own WhatsAppBot; retried (a new bot's RoleBinding may lag the pod by a
    moment, the API server may be restarting) until it arrives or the worker is told to stop."""
    from .adapters.bot_object import get_own_object
    from .core.backoff import BackoffPolicy

    assert cfg.namespace is not None
    backoff = BackoffPolicy(base_s=1.0, cap_s=30.0)
    attempt = 0
    while True:
        try:
            return get_own_object(api, cfg.namespace, cfg.bot_name)
        except Exception as exc:
            attempt += 1
            delay = backoff.delay(attempt, 0.5 + 0.5 * (time.time() % 1))
            log.warning(
                "cannot read the WhatsAppBot yet",
                extra={"error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                       "retry_in_s": round(delay, 1)},
            )
            if stop.wait(delay):
                raise InterruptedError from None


def _initial_spec(cfg: WorkerConfig, stop: threading.Event) -> tuple[Any, Any, Any] | int:
    """The spec to start with (from the file, the bot's WhatsAppBot or the defaults), the API
    client when the spec comes from Kubernetes, and the object's generation; or an exit code
    when the worker cannot start (or was stopped while waiting for its WhatsAppBot)."""
    from .adapters.spec_source import default_spec, load_file, spec_from_object

    kube_api = None
    generation = None
    try:
        if cfg.spec_source.kind == "file":
            assert cfg.spec_source.path is not None
            spec = load_file(cfg.spec_source.path, cfg)
        elif cfg.spec_source.kind == "kubernetes":
            from .adapters.bot_object import api_client

            try:
                kube_api = api_client()
            except Exception as exc:
                setting = ("KUBERNETES_SERVICE_HOST" if os.environ.get("KUBERNETES_SERVICE_HOST")
                           else "KUBECONFIG")
                return _fail(f"{setting}: cannot configure the Kubernetes client: {exc}"
                             .splitlines()[0])
            try:
                obj = _initial_kube_object(cfg, kube_api, stop)
            except InterruptedError:
                return 0
            spec = spec_from_object(obj, cfg)
            generation = obj.get("metadata", {}).get("generation")
        else:
            spec = default_spec(cfg)
    except ConfigError as exc:
        return _fail(str(exc))
    return spec, kube_api, generation


def _stop_on_signals(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _shut_down(cfg: WorkerConfig, worker: Any) -> None:
    # Armed before anything that could hang (neonize's stop() cannot interrupt a dial).
    timer = threading.Timer(cfg.shutdown_timeout_s, _hard_exit, args=(cfg.shutdown_timeout_s,))
    timer.daemon = True
    timer.start()
    worker.stop(max(1.0, cfg.shutdown_timeout_s - 1.0))
    # The timer stays armed (a daemon thread) until the process is gone: interpreter exit
    # waits for non-daemon threads, and neonize's connect() thread is one.
    for h in logging.getLogger().handlers:
        h.flush()


def run(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wabot worker",
        description="Run one WhatsApp bot (configured from the environment; see docs/design.md).",
    )
    parser.add_argument("--version", action="version", version=f"wabot worker {__version__}")
    parser.parse_args(list(argv or []))

    try:
        cfg = load_config(env)
    except ConfigError as exc:
        return _fail(str(exc))
    register_secrets(cfg)
    configure_logging(cfg.bot_id, cfg.server_name, cfg.log_level)
    # Before anything imports neonize: its media and preview toolbox loads on first use.
    lazydeps.install()

    from .adapters.session_store import prepare_session_dir
    from .worker import Worker

    try:
        prepare_session_dir(cfg)
    except OSError as exc:
        return _fail(f"AUTH_DIR: cannot create the session directory {cfg.session_dir}: "
                     f"{exc.strerror}")

    stop = threading.Event()
    _stop_on_signals(stop)
    initial = _initial_spec(cfg, stop)
    if isinstance(initial, int):
        return initial
    spec, kube_api, generation = initial

    exit_code = [0]

    def request_exit(code: int) -> None:
        # The worker's own request (a logout: restart me into pairing) ends it like SIGTERM.
        exit_code[0] = code
        stop.set()

    try:
        worker = Worker(cfg, spec, kube_api=kube_api, spec_generation=generation,
                        exit_request=request_exit)
        worker.start()
    except Exception as exc:
        log.exception("worker failed to start")
        return _fail(f"failed to start: {type(exc).__name__}: {exc}".splitlines()[0], 1)

    if cfg.spec_source.kind == "file":
        from .adapters.spec_source import FileSpecWatcher

        assert cfg.spec_source.path is not None
        FileSpecWatcher(cfg.spec_source.path, cfg, worker.apply_spec).start()

    while not stop.wait(1.0):
        pass
    _shut_down(cfg, worker)
    return exit_code[0]


def main() -> int:
    code = run(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # neonize's connect() runs in a non-daemon thread; after a clean stop it has returned, but
    # exit without waiting on any thread so a stuck Go call can never hold the pod.
    os._exit(code)


if __name__ == "__main__":
    main()
