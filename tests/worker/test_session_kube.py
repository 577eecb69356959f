"""Session control through Kubernetes, on a real API server, the worker using only the bot's
own ServiceAccount token (its Role: its WhatsAppBot, its status, its Lease): the annotation
`wabot.io/session-action` (+ `-id`) acted on exactly once, the outcome in
status.worker.sessionAction and as an Event (posted by the operator's code), and a logout that
wipes the session and hands the Lease to the next process only after its session has ended."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from neonize.events import ConnectedEv

from botworker.adapters.spec_source import spec_from_object
from botworker.runtime.session_control import EXIT_REPAIR
from botworker.worker import Worker
from wabot.spec import API_GROUP, API_VERSION, PLURAL

from .account_client import AccountHarness, AccountWorld, account_client
from .conftest import wait_for, worker_config, worker_process_env
from .test_connection import qr_callback
from .test_kube import Bot, admin, make_bot
from .test_session_control import linked_store

__all__ = ["admin", "make_bot"]  # fixtures, imported for pytest
pytestmark = pytest.mark.cluster


def annotate(bot: Bot, **annotations: str) -> None:
    bot.crd.patch_namespaced_custom_object(
        API_GROUP, API_VERSION, bot.namespace, PLURAL, bot.name,
        {"metadata": {"annotations": annotations}},
        _content_type="application/merge-patch+json")


def action_of(bot: Bot) -> dict[str, Any]:
    return dict(bot.get().get("status", {}).get("worker", {}).get("sessionAction") or {})


class Holders:
    """Every holderIdentity the Lease takes, from a watch (the admin's view): each change of
    the object is an event, so none is missed."""

    def __init__(self, bot: Bot) -> None:
        from kubernetes import watch

        self.seen: list[str | None] = []
        self._stopped = False
        self._watch = watch.Watch()
        self._bot = bot
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        api = k8s.CoordinationV1Api(self._bot.admin)
        try:
            for event in self._watch.stream(api.list_namespaced_lease, self._bot.namespace,
                                            field_selector=f"metadata.name={self._bot.lease}",
                                            timeout_seconds=120):
                holder = event["object"].spec.holder_identity
                if not self.seen or self.seen[-1] != holder:
                    self.seen.append(holder)
        except Exception:
            # Watch.stop() takes effect at the next event; after it the control plane may
            # go away first (the test's teardown) and end the stream mid-response.
            if not self._stopped:
                raise

    def stop(self) -> list[str | None]:
        self._stopped = True
        self._watch.stop()
        return list(self.seen)


def kube_worker(bot: Bot, tmp_path: Path, pod: str, exits: list[int],
                world: AccountWorld | None = None) -> AccountHarness:
    cfg = worker_config(
        tmp_path, "shop", "acme", WABOT_SPEC_SOURCE="kubernetes", WABOT_NAMESPACE=bot.namespace,
        WABOT_BOT_NAME="shop", POD_NAME=pod, WABOT_LEASE_NAME=bot.lease,
        WABOT_LEASE_DURATION_SECONDS="6",
    )
    obj = bot.get()
    world = world or AccountWorld()
    cfg.session_dir.mkdir(parents=True, exist_ok=True)
    w = Worker(cfg, spec_from_object(obj, cfg), client=account_client(str(cfg.session_path),
                                                                     world),
               kube_api=bot.api, spec_generation=obj["metadata"]["generation"],
               sessions_enabled=False, terminal=False, http=False, exit_request=exits.append)
    w.start()
    return AccountHarness(w, world)


def test_annotations_act_once_and_a_logout_hands_over_to_a_pairing_process(
        make_bot: Callable[..., Bot], tmp_path: Path) -> None:
    bot = make_bot()
    holders = Holders(bot)
    exits: list[int] = []
    first = kube_worker(bot, tmp_path, "wabot-shop", exits)
    try:
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=20, what="the Lease")
        wait_for(lambda: first.worker.connection.state.session_running, what="a session")
        first.feed(ConnectedEv(status=True))
        wait_for(lambda: bot.get().get("status", {}).get("worker", {}).get("state")
                 == "Connected", timeout=20, what="Connected")

        annotate(bot, **{"wabot.io/session-action": "restart",
                         "wabot.io/session-action-id": "r-1"})
        wait_for(lambda: (action_of(bot).get("requestId"), action_of(bot).get("result"))
                 == ("r-1", "Succeeded"), timeout=20, what="the restart's outcome in status")
        assert action_of(bot)["source"] == "kubernetes"
        assert first.worker.connection.state.sessions_started == 2
        # Any later change of the object (another annotation, a status write) does not act
        # on the same request again.
        annotate(bot, **{"example.com/note": "unrelated"})
        wait_for(lambda: first.worker.connection.state.session_running, what="a session")
        first.feed(ConnectedEv(status=True))
        wait_for(lambda: bot.get()["status"]["worker"]["state"] == "Connected", timeout=20,
                 what="Connected again")
        assert first.worker.connection.state.sessions_started == 2

        linked_store(first.worker.cfg.session_path)
        annotate(bot, **{"wabot.io/session-action": "logout",
                         "wabot.io/session-action-id": "l-1"})
        wait_for(lambda: exits == [EXIT_REPAIR], timeout=20, what="the logout")
        assert first.world.called("logout") == [("logout",)]
        assert not first.worker.cfg.session_path.exists()
        wait_for(lambda: (action_of(bot).get("requestId"), action_of(bot).get("result"))
                 == ("l-1", "Succeeded"), timeout=20, what="the logout's outcome in status")
        wait_for(lambda: bot.get()["status"]["worker"]["state"] == "LoggedOut", timeout=20,
                 what="LoggedOut")
    finally:
        # What main.py does with exit_request: the orderly stop, then the exit.
        assert first.worker.stop(15.0)
    assert bot.holder() is None  # released, after the session ended
    obj = bot.get()
    assert obj["status"]["worker"]["state"] == "LoggedOut"
    assert obj["status"]["worker"]["sessionAction"]["result"] == "Succeeded"

    # The next process (here another pod name, to tell the holders apart) on the same volume.
    world2 = AccountWorld()
    second = kube_worker(bot, tmp_path, "wabot-shop-2", [], world2)
    try:
        wait_for(lambda: bot.holder() == "wabot-shop-2", timeout=20, what="the hand-over")
        assert not first.worker.connection.state.session_running
        wait_for(lambda: second.worker.connection.state.session_running, what="a session")
        qr_callback(second.client, b"2@after-logout")
        wait_for(lambda: bot.get()["status"]["worker"]["state"] == "Pairing", timeout=20,
                 what="Pairing")
        assert bot.get()["status"]["worker"]["pairing"]["qr"] == "2@after-logout"
        time.sleep(0.5)
        assert world2.calls == []  # the annotation (l-1) is not acted on twice
    finally:
        assert second.worker.stop(15.0)
    seen = holders.stop()
    while seen and seen[0] is None:
        seen.pop(0)
    # One holder at a time, and the first gone before the second: the Lease went from the
    # first process to nobody (released after its session ended) to the second.
    assert seen[:3] == ["wabot-shop", None, "wabot-shop-2"], seen


def test_the_outcome_becomes_one_event_even_across_operator_restarts(
        make_bot: Callable[..., Bot], tmp_path: Path) -> None:
    from wabot_operator.kube import Kube
    from wabot_operator.memory import BotMemory, bot_log
    from wabot_operator.sessionevents import announce_session_action, event_name

    bot = make_bot()
    exits: list[int] = []
    h = kube_worker(bot, tmp_path, "wabot-shop", exits)
    try:
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=20, what="the Lease")
        annotate(bot, **{"wabot.io/session-action": "reboot",
                         "wabot.io/session-action-id": "x-1"})
        wait_for(lambda: action_of(bot).get("requestId") == "x-1", timeout=20,
                 what="the refusal in status")
        assert action_of(bot)["result"] == "Rejected"
        assert "unknown wabot.io/session-action" in action_of(bot)["message"]
    finally:
        assert h.worker.stop(15.0)
    kube = Kube(bot.admin)
    obj = bot.get()
    for _ in range(2):  # a fresh memory each time: an operator restart, or a peer
        announce_session_action(kube, obj, BotMemory(), bot_log(obj), datetime.now(UTC))
    events = k8s.CoreV1Api(bot.admin).list_namespaced_event(
        bot.namespace, field_selector=f"involvedObject.name={bot.name}").items
    mine = [e for e in events if e.metadata.name == event_name(bot.name, "x-1")]
    assert len(mine) == 1
    assert mine[0].type == "Warning" and mine[0].reason == "SessionActionRejected"
    assert "x-1" in mine[0].message and mine[0].involved_object.kind == "WhatsAppBot"
    # The bot's own token cannot post Events at all (why the operator posts them).
    with pytest.raises(k8s.exceptions.ApiException) as denied:
        k8s.CoreV1Api(bot.k8s_api).create_namespaced_event(bot.namespace, {
            "metadata": {"name": "spoof"}, "involvedObject": {"kind": "Pod", "name": "x"},
            "reason": "Spoof", "message": "m"})
    assert denied.value.status == 403


def test_worker_process_logs_out_on_the_annotation_and_exits_for_a_fresh_start(
        make_bot: Callable[..., Bot], tmp_path: Path) -> None:
    """The real entry point with the bot's token: no WhatsApp here, so the logout wipes the
    session without telling a phone; the process exits with EXIT_REPAIR after releasing the
    Lease; started again, it does not log out a second time."""
    bot = make_bot()
    env = worker_process_env(
        tmp_path, BOT_ID="shop", SERVER_NAME="acme", WABOT_BOT_NAME="shop",
        WABOT_NAMESPACE=bot.namespace, POD_NAME="wabot-shop", WABOT_LEASE_NAME="wabot-shop",
        WABOT_SPEC_SOURCE="kubernetes", HTTP_PORT="0", WABOT_SHUTDOWN_TIMEOUT_SECONDS="15",
        KUBECONFIG=str(bot.kubeconfig(tmp_path / "bot.kubeconfig")),
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)
    store = tmp_path / "auth" / "auth" / "acme" / "bot_shop" / "session.sqlite3"
    store.parent.mkdir(parents=True, mode=0o700)
    store.write_bytes(b"")  # an empty SQLite store: not linked, so the first dial is at once

    def run() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "botworker"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    proc = run()
    try:
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=60, what="the Lease")
        wait_for(lambda: bot.get().get("status", {}).get("worker", {}).get("state")
                 in ("Connecting", "Disconnected"), timeout=60, what="a session")
        annotate(bot, **{"wabot.io/session-action": "logout",
                         "wabot.io/session-action-id": "p-1"})
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_REPAIR, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert bot.holder() is None
    assert not store.exists()
    worker = bot.get()["status"]["worker"]
    assert worker["state"] == "LoggedOut"
    assert worker["sessionAction"]["requestId"] == "p-1"
    assert worker["sessionAction"]["result"] == "Succeeded"

    again = run()
    try:
        wait_for(lambda: bot.holder() == "wabot-shop", timeout=60, what="the Lease again")
        wait_for(lambda: bot.get()["status"]["worker"]["state"] in ("Connecting",
                                                                    "Disconnected"),
                 timeout=60, what="a new session")
        time.sleep(2.0)
        assert again.poll() is None  # not logged out (and ended) a second time
    finally:
        again.terminate()
        _, err = again.communicate(timeout=30)
    assert again.returncode == 0, err[-3000:]
