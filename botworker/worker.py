"""One bot, assembled: the composition root that wires the parts and orders start and stop.

Start: session directory -> neonize client with handlers -> pipeline, audit writer, HTTP ->
status reporter -> connection control loop -> Lease elector (the session starts only once the
Lease is held) -> spec watcher -> schema migration in the background (a dead database must not
delay the WhatsApp connection).

Stop (SIGTERM): stop taking messages and answer the queued ones briefly -> stop the neonize
session -> publish Stopped -> release the Lease (only once the session has really ended: the
next pod may connect the moment the Lease is free) -> spool what the database did not take.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint
from typing import Any

from wabot import spec_view  # the contract without pydantic (wabot/specread.py)

from . import __version__
from .adapters.audit_writer import AuditWriter
from .adapters.database import DataLayer, Migrator
from .adapters.media_fetch import Fetcher
from .adapters.session_store import has_linked_session, prepare_session_dir
from .adapters.state_file import GreetedChats
from .adapters.webhooks import WebhookDispatcher, WebhookSettings
from .config import WorkerConfig, redact_dsn
from .core import lifecycle as lc
from .core.backoff import BackoffPolicy
from .core.proxy import INVALID_PROXY, InvalidProxyUrl, ProxyUrl, parse_proxy_url
from .core.ratelimit import Limits, RateLimiter
from .core.registry import build_registry
from .logs import get_logger
from .metrics import Metrics
from .runtime import account_parts
from .runtime.activity_report import PERIOD_S
from .runtime.connection import ConnectionManager
from .runtime.health_server import HealthServer
from .runtime.incoming import inbound_events
from .runtime.media_source import MediaSource
from .runtime.message_api import IdempotencyStore, MessageApi
from .runtime.pipeline import Pipeline, Runtime
from .runtime.sender import NeonizeTransport, Sender
from .runtime.session_control import finish_pending_logout
from .runtime.state_events import activity_status, emit_connection_change, uptime
from .runtime.status_writer import StatusWriter

log = get_logger("worker")


class Worker:
    def __init__(
        self,
        cfg: WorkerConfig,
        spec: spec_view.WhatsAppBotSpec,
        *,
        client: Any | None = None,
        plugins_available: Iterable[EntryPoint] | None = None,
        sessions_enabled: bool = True,
        kube_api: Any | None = None,
        reporter: Any | None = None,
        spec_generation: int | None = None,
        migrator: Migrator | None = None,
        http: bool = True,
        terminal: bool | None = None,
        policy: lc.Policy = lc.DEFAULT_POLICY,
        exit_request: Callable[[int], None] | None = None,
        activity_period_s: float = PERIOD_S,
    ) -> None:
        """`exit_request(code)`: end the process with `code` (main.py), e.g. after a logout.
        `activity_period_s`: at most one status write of the bot's activity per period."""
        self.cfg = cfg
        self.started_at = time.time()
        self.metrics = Metrics(cfg.bot_id, cfg.server_name)
        self._plugins_available = list(plugins_available) if plugins_available is not None else None
        self._stopped = threading.Event()
        prepare_session_dir(cfg)
        finish_pending_logout(cfg)
        self._exit_request = exit_request
        # Before the client's first connect() creates the store.
        self.resuming = has_linked_session(cfg.session_path)
        if client is None:
            from neonize.client import NewClient

            client = NewClient(str(cfg.session_path))
        self.client = client

        self.datalayer = DataLayer(
            cfg.effective_database_url, cfg.server_name, self.metrics, migrator=migrator
        )
        self.audit = AuditWriter(self.datalayer.audit_rows, cfg.spool_path, self.metrics)
        self._runtime = self._build_runtime(spec)
        self.limiter = RateLimiter(self._limits(spec))
        self.greeted = GreetedChats(cfg.state_path)
        self.webhooks = self._webhook_dispatcher()
        self.status = StatusWriter(
            reporter, self.metrics.activity, self.webhooks,
            lambda: lc.to_report(self.connection.state, cfg.pod_name, time.time()),
            period_s=activity_period_s, speaks=lambda: self.connection.state.lease_held)
        self.proxy, self._proxy_problem = self._proxy(cfg)
        self.elector: Any = None
        self.spec_watcher: Any = None
        if kube_api is not None:
            self._cluster_parts(kube_api, spec_generation)
        self._session_parts(client, policy, sessions_enabled, terminal)
        self._http_parts(http)

    def _webhook_dispatcher(self) -> WebhookDispatcher:
        cfg = self.cfg
        return WebhookDispatcher(
            cfg.state_path, self.metrics, bot=cfg.bot_id, server_name=cfg.server_name,
            target=lambda: self._runtime.spec.webhook,
            secret=(cfg.webhook_secret.get_secret_value().encode()
                    if cfg.webhook_secret is not None else None),
            settings=WebhookSettings(
                timeout_s=cfg.webhook_timeout_s, queue_max=cfg.webhook_queue_max,
                max_age_s=cfg.webhook_max_age_s,
                backoff=BackoffPolicy(base_s=1.0, cap_s=cfg.webhook_backoff_cap_s,
                                      min_s=min(0.5, cfg.webhook_backoff_cap_s)),
                egress=cfg.webhook_egress,
            ),
        )

    @staticmethod
    def _proxy(cfg: WorkerConfig) -> tuple[ProxyUrl | None, str | None]:
        """spec.proxy, or why it cannot be used (start() then blocks the session)."""
        if cfg.proxy_url is None:
            return None, None
        try:
            return parse_proxy_url(cfg.proxy_url.get_secret_value()), None
        except InvalidProxyUrl as exc:
            return None, f"invalid proxy URL (spec.proxy): {exc}"

    def _cluster_parts(self, kube_api: Any, spec_generation: int | None) -> None:
        """The status reporter, the Lease elector and (in a pod) the spec watcher; imported
        here so a worker without a cluster never loads them."""
        from .adapters.bot_object import SpecWatcher, StatusReporter
        from .adapters.lease_elector import LeaseElector
        from .core.lease import Timing

        cfg = self.cfg
        assert cfg.namespace is not None
        self.status.reporter = StatusReporter(kube_api, cfg.namespace, cfg.bot_name,
                                              self.metrics)
        self.elector = LeaseElector(
            kube_api, cfg.namespace, cfg.lease_name, cfg.pod_name, self.metrics,
            on_acquired=lambda: self.connection.post(lc.LeaseAcquired()),
            on_lost=lambda reason: self.connection.post(lc.LeaseLost(reason)),
            timing=Timing(cfg.lease_duration_s),
        )
        if cfg.on_kubernetes:
            self.spec_watcher = SpecWatcher(
                kube_api, cfg.namespace, cfg.bot_name, self.metrics,
                on_object=self.apply_object, generation=spec_generation,
                on_any=lambda obj: self.session.on_object(obj),
            )

    def _session_parts(
        self, client: Any, policy: lc.Policy, sessions_enabled: bool, terminal: bool | None
    ) -> None:
        """The WhatsApp session, the sender on it and the pipeline that feeds the sender."""
        cfg = self.cfg
        self.connection = ConnectionManager(
            client,
            metrics=self.metrics,
            publish=self.status.publish,
            pairing=lambda: self.session.pairing_spec(self._runtime.spec.pairing),
            on_message=lambda ev: self.pipeline.offer(ev),
            on_call=lambda ev: self.account.events.on_call(ev),
            pod_name=cfg.pod_name,
            policy=policy,
            sessions_enabled=sessions_enabled,
            terminal=terminal,
            proxy=self.proxy,
            on_change=self._connection_changed,
            resuming=self.resuming,
        )
        self.account = account_parts.build(
            cfg, client, self.connection, metrics=self.metrics, webhooks=self.webhooks,
            limiter=self.limiter, settings=lambda: self._runtime.spec.settings,
            reject_call=lambda ev: self.sender.reject_call(ev), publish=self.status.publish_now,
            request_exit=self._exit)
        self.session = self.account.session
        kinds = inbound_events(cfg, client, self.metrics, self.webhooks,
                               on_storage_change=self.status.publish_now)
        self.sender = Sender(
            NeonizeTransport(client), self.limiter, self.metrics, self.connection.can_send,
            media=MediaSource(Fetcher(cfg.webhook_egress)), on_sent=kinds.sent,
        )
        self.pipeline = Pipeline(
            bot_id=cfg.bot_id,
            server_name=cfg.server_name,
            runtime=lambda: self._runtime,
            sender=self.sender,
            metrics=self.metrics,
            audit=self.audit,
            db=self.datalayer.session,
            own_user=self.connection.own_user,
            events=self.webhooks,
            greeted=lambda: self.greeted,
            kinds=kinds,
        )
        self.pipeline.account = self.account.calls
        self.status.session, self.status.media = self.session, kinds.media_status

    def _http_parts(self, http: bool) -> None:
        """The send-message API (when a token is set) and the health server that carries it."""
        cfg = self.cfg
        self.api: MessageApi | None = None
        self._idempotency: IdempotencyStore | None = None
        if cfg.api_token is not None:
            self._idempotency = IdempotencyStore(cfg.state_path)
            self.api = MessageApi(self.sender, self._idempotency, self.metrics,
                                  bot=cfg.bot_id, server_name=cfg.server_name)
        self.http: HealthServer | None = None
        if http:
            self.http = HealthServer(
                cfg.http_host, cfg.http_port,
                live=self.live, ready=self.ready, metrics=self.metrics.render,
                api_token=(cfg.api_token.get_secret_value()
                           if cfg.api_token is not None else None),
                api_routes=([*self.api.routes(), *self.pipeline.kinds.routes(),
                             *self.account.routes(self.connection, cfg.pod_name, lambda:
                                                  activity_status(self.status.activity.current()))]
                            if self.api is not None else ()),
            )

    # --- spec --------------------------------------------------------------------------------

    @staticmethod
    def _limits(spec: spec_view.WhatsAppBotSpec) -> Limits:
        return Limits(spec.rate_limit.per_chat_per_minute, spec.rate_limit.per_bot_per_minute)

    def _info(self) -> dict[str, str]:
        st = self.connection.state
        return {
            "wabot": __version__,
            "up": uptime(time.time() - self.started_at),
            "state": st.state.value,
            "commands": str(len(self._runtime.registry.commands())),
        }

    def _build_runtime(self, spec: spec_view.WhatsAppBotSpec) -> Runtime:
        result = build_registry(spec, self.cfg.bot_id, self._info, self._plugins_available)
        for err in result.errors:
            log.error("command registry problem", extra={"error": err})
        if result.plugins:
            log.info("plugins loaded", extra={"plugins": result.plugins})
        return Runtime(spec=spec, registry=result.registry)

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def apply_spec(self, spec: spec_view.WhatsAppBotSpec) -> None:
        """Swap in a new spec without a restart: commands, settings, features and rate limits
        apply to the next message. Pairing and identity changes need a new session, which the
        operator handles by replacing the pod."""
        runtime = self._build_runtime(spec)
        self._runtime = runtime
        self.limiter.set_limits(self._limits(spec))
        if spec.webhook is not None:
            self.webhooks.start()
        self.metrics.spec_reload("applied")
        log.info(
            "spec applied without restart",
            extra={"commands": [c.name for c in runtime.registry.commands()]},
        )

    def apply_object(self, obj: dict[str, Any]) -> None:
        """A WhatsAppBot object from the API server (kube.SpecWatcher)."""
        from .adapters.spec_source import spec_from_object
        from .config import ConfigError

        try:
            spec = spec_from_object(obj, self.cfg)
        except ConfigError as exc:
            self.metrics.spec_reload("rejected")
            log.error("ignoring the changed spec", extra={"error": str(exc)})
            return
        self.apply_spec(spec)

    # --- webhooks: connection and pairing events -------------------------------------------

    def _connection_changed(self, before: lc.ConnState, after: lc.ConnState) -> None:
        emit_connection_change(self.webhooks, self.session, before, after)

    # --- health ------------------------------------------------------------------------------

    def live(self) -> tuple[bool, str]:
        if not self.pipeline.alive:
            return False, "pipeline thread is dead"
        if not self.connection.alive:
            return False, "connection thread is dead"
        return True, ""

    def ready(self) -> tuple[bool, str]:
        st = self.connection.state
        if st.ready:
            return True, ""
        if st.error_reason:
            return False, f"{st.error_reason}: {st.last_error}"
        if not st.lease_held:
            return False, "waiting for the Lease"
        return False, f"state {st.state.value}"

    # --- lifecycle ---------------------------------------------------------------------------

    def _exit(self, code: int) -> None:
        log.info("the worker ends to start afresh", extra={"exit_code": code})
        if self._exit_request is not None:
            self._exit_request(code)

    def start(self) -> None:
        log.info(
            "starting worker",
            extra={
                "version": __version__,
                "session_dir": str(self.cfg.session_dir),
                "db": redact_dsn(self.cfg.effective_database_url),
                "spec_source": self.cfg.spec_source.kind,
                "pod": self.cfg.pod_name,
                "linked_session": self.resuming,
            },
        )
        if self.resuming:
            log.info("linked session found on the volume (a restart): first dial spread after "
                     "the Lease", extra={"within_s": self.connection.policy.resume_jitter_s})
        self.connection.register_handlers()
        if self._proxy_problem is not None:
            # Before the Lease can arrive: no session starts, the report says why.
            log.error("not connecting to WhatsApp", extra={"error": self._proxy_problem})
            self.connection.post(lc.ConfigBlocked(INVALID_PROXY, self._proxy_problem))
        if self._runtime.spec.webhook is not None:
            self.webhooks.start()
        self.pipeline.start()
        self.account.events.start()
        self.audit.start()
        if self.http is not None:
            self.http.start()
        self.status.start()
        self.connection.start()
        if self.elector is not None:
            self.elector.start()
        else:
            self.connection.post(lc.LeaseAcquired())
        if self.spec_watcher is not None:
            self.spec_watcher.start()
        threading.Thread(
            target=self.datalayer.ensure_schema, name="db-migrate", daemon=True
        ).start()

    def stop(self, timeout_s: float) -> bool:
        """Orderly shutdown within `timeout_s`; True when every step finished in time."""
        if self._stopped.is_set():
            return True
        self._stopped.set()
        deadline = time.monotonic() + timeout_s

        def left(cap: float) -> float:
            return max(0.1, min(cap, deadline - time.monotonic()))

        log.info("shutting down")
        if self.spec_watcher is not None:
            self.spec_watcher.stop()
        self.pipeline.stop(drain_s=left(min(3.0, timeout_s / 4)))
        self.account.events.stop()
        ended = self.connection.shutdown(left(max(1.0, timeout_s - 6.0)))
        if not ended:
            log.warning("the WhatsApp session did not end in time")
        self.status.stop(left(2.0))
        if self.elector is not None:
            # Releasing while a session might still be up would let the next pod connect
            # alongside it; without release the Lease simply expires.
            self.elector.stop(release=ended)
        self.webhooks.stop(left(3.0))
        self.audit.close(left(3.0))
        self.datalayer.dispose()
        self.greeted.close()
        if self._idempotency is not None:
            self._idempotency.close()
        if self.http is not None:
            self.http.stop()
        log.info("worker stopped", extra={"clean": ended})
        return ended
