"""The worker against a real API server, with the bot's own narrow RBAC.

The bot's ServiceAccount, Role, RoleBinding and Lease are rendered by the operator's own
renderers from operator/bot-templates/, and the worker talks with a real ServiceAccount token
(TokenRequest API), so every call below is authorised exactly as in a pod.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from botworker.adapters.bot_object import SpecWatcher, StatusReporter
from botworker.adapters.kube_client import ApiError, KubeClient
from botworker.adapters.lease_elector import LeaseElector
from botworker.core import lease as lz
from botworker.metrics import Metrics
from wabot.spec import API_GROUP, API_VERSION, KIND, PLURAL, WhatsAppBotSpec, WorkerState

from .conftest import (
    REPO,
    Harness,
    recording_client,
    wait_for,
    worker_config,
    worker_process_env,
)

pytestmark = pytest.mark.cluster


def _create(fn: Callable[..., Any], namespace: str, body: dict[str, Any]) -> None:
    try:
        fn(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise


class Bot:
    """One WhatsAppBot with the objects the operator would give it, and its credentials."""

    def __init__(self, kube: Any, admin: Any, namespace: str, name: str, tenant: str) -> None:
        from wabot_operator.specs.bot import BotRef, RenderDefaults, template_values
        from wabot_operator.specs.lease import render_lease
        from wabot_operator.specs.rbac import (
            render_role,
            render_role_binding,
            render_service_account,
        )
        from wabot_operator.templates import load_templates

        self.admin, self.namespace, self.name = admin, namespace, name
        self.lease = f"wabot-{name}"
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                "metadata": {"name": name}, "spec": {"serverName": tenant, "botId": name}}
        obj = self.crd.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                       PLURAL, body)
        spec = WhatsAppBotSpec.model_validate(obj["spec"])
        ref = BotRef(name, namespace, obj["metadata"]["uid"])
        templates = load_templates(REPO / "operator" / "bot-templates")
        values = template_values(ref, spec, RenderDefaults(worker_image="wabot:test"))
        core, rbac = k8s.CoreV1Api(admin), k8s.RbacAuthorizationV1Api(admin)
        coord = k8s.CoordinationV1Api(admin)
        # An operator watching this cluster may be quicker to create the same objects (from
        # the same renderers): either way they exist as the operator would have them.
        _create(core.create_namespaced_service_account,
                namespace, render_service_account(ref, spec, templates, values))
        _create(rbac.create_namespaced_role, namespace,
                render_role(ref, spec, templates, values))
        self.binding = render_role_binding(ref, spec, templates, values)
        _create(rbac.create_namespaced_role_binding, namespace, self.binding)
        _create(coord.create_namespaced_lease, namespace,
                render_lease(ref, spec, templates, values))
        token = core.create_namespaced_service_account_token(
            self.lease, namespace,
            k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(
                audiences=[], expiration_seconds=3600)),
        ).status.token
        self.token = token
        # The worker's own client with the bot's token (what the classes under test take),
        # and the same token in the `kubernetes` client for probing the Role with other calls.
        self.api = KubeClient.with_token(admin.configuration.host, token,
                                         ca_file=admin.configuration.ssl_ca_cert)
        cfg = k8s.Configuration()
        cfg.host = admin.configuration.host
        cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
        cfg.api_key = {"BearerToken": token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        self.k8s_api = k8s.ApiClient(cfg)

    @property
    def crd(self) -> Any:
        return k8s.CustomObjectsApi(self.admin)

    def get(self) -> dict[str, Any]:
        return dict(self.crd.get_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, PLURAL, self.name))

    def holder(self) -> str | None:
        lease = k8s.CoordinationV1Api(self.admin).read_namespaced_lease(self.lease,
                                                                          self.namespace)
        return lease.spec.holder_identity if lease.spec else None

    def kubeconfig(self, path: Path) -> Path:
        ca = Path(self.admin.configuration.ssl_ca_cert)
        shutil.copy(ca, path.with_suffix(".ca"))
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: c, cluster: {{server: '{self.admin.configuration.host}', "
            f"certificate-authority: '{path.with_suffix('.ca')}'}}}}]\n"
            f"users: [{{name: u, user: {{token: '{self.token}'}}}}]\n"
            f"contexts: [{{name: x, context: {{cluster: c, user: u, namespace: "
            f"'{self.namespace}'}}}}]\ncurrent-context: x\n"
        )
        return path


@pytest.fixture
def admin(kube: Any) -> Any:
    return kube.api_client()


@pytest.fixture
def make_bot(kube: Any, admin: Any, namespace: str) -> Callable[..., Bot]:
    def make(name: str = "shop", tenant: str = "acme") -> Bot:
        return Bot(kube, admin, namespace, name, tenant)

    return make


def metrics() -> Metrics:
    return Metrics("shop", "acme")


def _worker_fields(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in obj["metadata"].get("managedFields", [])
            if m.get("manager") == "wabot-worker"]


def test_status_patch_writes_only_status_worker(make_bot: Callable[..., Bot]) -> None:
    from botworker.core import lifecycle as lc

    bot = make_bot()
    bot.crd.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, bot.namespace, PLURAL, bot.name,
        {"status": {"observedGeneration": 1, "restarts": 2}},
        field_manager="test-operator", _content_type="application/merge-patch+json",
    )
    reporter = StatusReporter(bot.api, bot.namespace, bot.name, metrics())
    pairing = lc.ConnState(state=WorkerState.PAIRING, lease_held=True,
                           pairing=lc.Pairing("qr", "2@payload", time.time() + 60))
    reporter.patch_once(lc.to_report(pairing, "wabot-shop", time.time()))
    obj = bot.get()
    assert obj["status"]["worker"]["state"] == "Pairing"
    assert obj["status"]["worker"]["pairing"]["qr"] == "2@payload"
    assert obj["status"]["worker"]["podName"] == "wabot-shop"
    assert "observedGeneration" in obj["status"]  # another writer's fields are left alone
    # The API server's own record of who wrote what: the worker's writes are all under
    # status.worker, through the status subresource, and nothing else.
    mine = _worker_fields(obj)
    assert [m["subresource"] for m in mine] == ["status"]
    assert list(mine[0]["fieldsV1"]) == ["f:status"]
    assert list(mine[0]["fieldsV1"]["f:status"]) == ["f:worker"]

    connected = lc.ConnState(state=WorkerState.CONNECTED, lease_held=True,
                             account=lc.Account("4915@s.whatsapp.net", "Shop"),
                             last_connected_at=time.time())
    reporter.patch_once(lc.to_report(connected, "wabot-shop", time.time()))
    after = bot.get()
    worker = after["status"]["worker"]
    assert worker["state"] == "Connected" and "pairing" not in worker  # stale payload removed
    assert worker["account"] == {"jid": "4915@s.whatsapp.net", "pushName": "Shop"}
    assert after["metadata"]["generation"] == 1  # the spec was never touched


def test_the_bots_role_reaches_only_its_own_objects(make_bot: Callable[..., Bot]) -> None:
    shop, other = make_bot("shop"), make_bot("other")
    crd, coord = k8s.CustomObjectsApi(shop.k8s_api), k8s.CoordinationV1Api(shop.k8s_api)
    # Its own: allowed.
    crd.get_namespaced_custom_object(API_GROUP, API_VERSION, shop.namespace, PLURAL, "shop")
    listed = crd.list_namespaced_custom_object(API_GROUP, API_VERSION, shop.namespace, PLURAL,
                                               field_selector="metadata.name=shop")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["shop"]
    coord.read_namespaced_lease("wabot-shop", shop.namespace)
    # Another bot's, or anything unnamed: forbidden.
    denied = [
        lambda: crd.get_namespaced_custom_object(API_GROUP, API_VERSION, shop.namespace,
                                                 PLURAL, "other"),
        lambda: crd.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, shop.namespace, PLURAL, "other",
            {"status": {"worker": {"state": "Connected", "updatedAt": "2030-01-01T00:00:00Z"}}},
            _content_type="application/merge-patch+json"),
        lambda: crd.list_namespaced_custom_object(API_GROUP, API_VERSION, shop.namespace,
                                                  PLURAL),
        lambda: crd.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, shop.namespace, PLURAL, "shop",
            {"spec": {"suspend": True}}, _content_type="application/merge-patch+json"),
        lambda: coord.read_namespaced_lease("wabot-other", shop.namespace),
        lambda: coord.create_namespaced_lease(shop.namespace, k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name="wabot-new"))),
        lambda: k8s.CoreV1Api(shop.k8s_api).list_namespaced_secret(shop.namespace),
    ]
    for call in denied:
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403
    # The worker's own reporter, pointed at the other bot, is refused the same way.
    reporter = StatusReporter(shop.api, shop.namespace, other.name, metrics())
    from botworker.core import lifecycle as lc

    with pytest.raises(ApiError) as refused:
        reporter.patch_once(lc.to_report(lc.ConnState(), "p", time.time()))
    assert refused.value.status == 403
    assert "worker" not in other.get().get("status", {})


def elector(bot: Bot, identity: str, events: list[str], duration: float = 15.0) -> LeaseElector:
    return LeaseElector(
        bot.api, bot.namespace, bot.lease, identity, metrics(),
        on_acquired=lambda: events.append(f"{identity}:acquired"),
        on_lost=lambda reason: events.append(f"{identity}:lost:{reason}"),
        timing=lz.Timing(duration),
    )


def test_two_contenders_only_one_wins(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    events: list[str] = []
    contenders = [elector(bot, f"pod-{i}", events) for i in range(4)]
    barrier = threading.Barrier(len(contenders))

    def contend(e: LeaseElector) -> None:
        barrier.wait()
        e.step()

    threads = [threading.Thread(target=contend, args=(e,)) for e in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [e for e in contenders if e.held]
    assert len(winners) == 1
    assert bot.holder() == winners[0].identity
    assert events == [f"{winners[0].identity}:acquired"]
    # The losers keep waiting while the holder renews.
    for e in contenders:
        e.step()
    assert [e for e in contenders if e.held] == winners


def test_release_hands_over_at_once(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    events: list[str] = []
    first, second = elector(bot, "pod-1", events), elector(bot, "pod-2", events)
    first.step()
    second.step()
    assert first.held and not second.held
    first.stop(release=True)
    assert bot.holder() is None
    second.step()
    assert second.held and bot.holder() == "pod-2"


def test_a_crashed_holder_is_replaced_only_after_the_lease_duration(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot()
    events: list[str] = []
    crashed = elector(bot, "pod-1", events, duration=3.0)
    crashed.step()  # holds, then never renews again
    successor = elector(bot, "pod-2", events, duration=3.0)
    started = time.monotonic()
    successor.start()
    try:
        wait_for(lambda: successor.held, timeout=15, what="the successor to take over")
        assert time.monotonic() - started >= 3.0
    finally:
        successor.stop(release=True)


def test_a_stolen_lease_fences_the_holder(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    events: list[str] = []
    holder = elector(bot, "pod-1", events)
    holder.step()
    assert holder.held
    k8s.CoordinationV1Api(bot.admin).patch_namespaced_lease(
        bot.lease, bot.namespace, {"spec": {"holderIdentity": "intruder"}},
        _content_type="application/merge-patch+json")
    holder.step()
    assert not holder.held
    assert events[-1] == "pod-1:lost:taken over by intruder"


def test_a_holder_that_cannot_renew_fences_itself_in_time(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    events: list[str] = []
    api = KubeClient.with_token(bot.admin.configuration.host, bot.token,
                                ca_file=bot.admin.configuration.ssl_ca_cert)
    holder = LeaseElector(
        api, bot.namespace, bot.lease, "pod-1", metrics(),
        on_acquired=lambda: events.append("acquired"),
        on_lost=lambda reason: events.append(f"lost:{reason}"), timing=lz.Timing(3.0),
    )
    holder.start()
    try:
        wait_for(lambda: holder.held, what="the Lease")
        # A partition where packets vanish: the TCP handshake completes (the kernel's
        # backlog) but nothing ever answers, so every renewal hangs instead of failing fast.
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        api.server = f"https://127.0.0.1:{blackhole.getsockname()[1]}"
        try:
            lost_at = wait_for(lambda: (not holder.held) and time.time(), timeout=15,
                               what="fencing")
        finally:
            blackhole.close()
        assert events == ["acquired", "lost:could not renew within the deadline"]
        renew_time = k8s.CoordinationV1Api(bot.admin).read_namespaced_lease(
            bot.lease, bot.namespace).spec.renew_time
        # The safety property: the holder stopped serving before the Lease could expire for
        # anyone else (one duration after its last successful renewal; same host, same clock).
        assert lost_at < renew_time.timestamp() + 3.0
    finally:
        holder.stop(release=False)


def _kube_worker(bot: Bot, tmp_path: Path) -> Harness:
    from botworker.worker import Worker

    cfg = worker_config(
        tmp_path, "shop", "acme", WABOT_SPEC_SOURCE="kubernetes", WABOT_NAMESPACE=bot.namespace,
        WABOT_BOT_NAME="shop", POD_NAME="wabot-shop", WABOT_LEASE_DURATION_SECONDS="6",
    )
    obj = bot.get()
    from botworker.adapters.spec_source import spec_from_object

    w = Worker(cfg, spec_from_object(obj, cfg), client=recording_client(str(cfg.session_path)),
               kube_api=bot.api, spec_generation=obj["metadata"]["generation"],
               sessions_enabled=False, terminal=False, http=False)
    w.start()
    return Harness(w)


def test_worker_reports_holds_the_lease_and_reloads_its_spec(
    make_bot: Callable[..., Bot], tmp_path: Path
) -> None:
    from neonize.events import ConnectedEv

    bot = make_bot()
    h = _kube_worker(bot, tmp_path)
    try:
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=20, what="the Lease")
        wait_for(lambda: bot.get().get("status", {}).get("worker", {}).get("state")
                 == "Connecting", timeout=20, what="status Connecting")
        h.feed(ConnectedEv(status=True))
        wait_for(lambda: bot.get()["status"]["worker"]["state"] == "Connected", timeout=20,
                 what="status Connected")
        assert h.worker.ready() == (True, "")
        assert h.ask("!hours") == "Unknown command !hours. Send !help for the list."

        bot.crd.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, bot.namespace, PLURAL, bot.name,
            {"spec": {"commands": {"prefix": "?", "custom": [
                {"name": "hours", "response": "We open at 9."}]},
                "rateLimit": {"perChatPerMinute": 2}}},
            _content_type="application/merge-patch+json")
        wait_for(lambda: "hours" in h.worker.runtime.registry, timeout=20, what="hot reload")
        assert h.ask("?hours") == "We open at 9."
        assert h.worker.runtime.spec.rate_limit.per_chat_per_minute == 2
        assert h.metric("wabot_spec_reloads_total", result="applied") == 1
    finally:
        assert h.worker.stop(15.0)
    assert bot.holder() is None  # released after the session ended
    assert bot.get()["status"]["worker"]["state"] == "Stopped"


def test_a_worker_waits_for_a_lease_held_elsewhere(
    make_bot: Callable[..., Bot], tmp_path: Path
) -> None:
    bot = make_bot()
    bot.crd.patch_namespaced_custom_object_status(  # what the previous pod left behind
        API_GROUP, API_VERSION, bot.namespace, PLURAL, bot.name,
        {"status": {"worker": {"state": "Connected", "podName": "old-pod",
                               "updatedAt": "2030-01-01T00:00:00Z"}}},
        _content_type="application/merge-patch+json")
    events: list[str] = []
    old = elector(bot, "old-pod", events)
    old.step()
    h = _kube_worker(bot, tmp_path)
    try:
        wait_for(lambda: bot.get()["status"]["worker"].get("podName") == "wabot-shop",
                 timeout=20, what="this pod's first report")
        assert bot.get()["status"]["worker"]["state"] == "Starting"
        assert h.worker.ready() == (False, "waiting for the Lease")
        assert bot.holder() == "old-pod"
        assert not h.worker.connection.state.session_running  # no dial without the Lease
        old.stop(release=True)
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=20, what="the hand-over")
        wait_for(lambda: bot.get()["status"]["worker"]["state"] == "Connecting", timeout=20,
                 what="Connecting")
    finally:
        assert h.worker.stop(15.0)


def test_worker_process_in_kubernetes_mode(make_bot: Callable[..., Bot], tmp_path: Path) -> None:
    """The real entry point with the bot's token: it takes the Lease, dials (no WhatsApp here,
    so the real neonize connect fails), reports that, and on SIGTERM releases and exits 0."""
    bot = make_bot()
    env = worker_process_env(
        tmp_path, BOT_ID="shop", SERVER_NAME="acme", WABOT_BOT_NAME="shop",
        WABOT_NAMESPACE=bot.namespace, POD_NAME="wabot-shop", WABOT_LEASE_NAME="wabot-shop",
        WABOT_SPEC_SOURCE="kubernetes",
        KUBECONFIG=str(bot.kubeconfig(tmp_path / "bot.kubeconfig")), HTTP_PORT="0",
        WABOT_SHUTDOWN_TIMEOUT_SECONDS="15",
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.Popen([sys.executable, "-m", "botworker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=60, what="the Lease")

        def dial_failed() -> bool:
            worker = bot.get().get("status", {}).get("worker", {})
            return "NeonizeError" in (worker.get("lastError") or "")

        wait_for(dial_failed, timeout=60, what="the dial failure in status")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert bot.holder() is None
    assert bot.get()["status"]["worker"]["state"] == "Stopped"


def test_spec_watcher_ignores_status_updates(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    seen: list[int] = []
    obj = bot.get()
    watcher = SpecWatcher(bot.api, bot.namespace, bot.name, metrics(),
                          on_object=lambda o: seen.append(o["metadata"]["generation"]),
                          generation=obj["metadata"]["generation"])
    watcher.start()
    try:
        reporter = StatusReporter(bot.api, bot.namespace, bot.name, metrics())
        from botworker.core import lifecycle as lc

        for _ in range(3):
            reporter.patch_once(lc.to_report(lc.ConnState(), "p", time.time()))
        bot.crd.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, bot.namespace, PLURAL, bot.name,
            {"spec": {"settings": {"ignoreGroups": False}}},
            _content_type="application/merge-patch+json")
        wait_for(lambda: seen, timeout=20, what="the spec change")
        assert seen == [obj["metadata"]["generation"] + 1]
    finally:
        watcher.stop()
