"""The worker's own Kubernetes client (`botworker.adapters.kube_client`) against a real API server.

Each way the worker finds credentials (kubeconfig with client-certificate files, kubeconfig
with inline data and a token, the in-pod ServiceAccount directory with a rotating token), and
the protocol details the worker relies on: a watch whose resourceVersion has expired (410 Gone,
then a relist), a quiet watch that the server ends and the watcher resumes without listing, a
Lease write conditional on a stale resourceVersion (409 Conflict), a pooled connection the
server has closed.
"""

from __future__ import annotations

import base64
import socket
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from botworker.adapters import bot_object as kube
from botworker.adapters.bot_object import SpecWatcher, get_own_object
from botworker.adapters.kube_client import MERGE_PATCH, ApiError, KubeClient
from wabot.spec import API_GROUP, API_VERSION, PLURAL

from .conftest import wait_for
from .test_kube import Bot, metrics

pytestmark = pytest.mark.cluster


@pytest.fixture
def make_bot(kube: Any, namespace: str) -> Callable[..., Bot]:
    """test_kube's bots: the operator's objects for the bot and its ServiceAccount token."""
    admin = kube.api_client()

    def make(name: str = "shop", tenant: str = "acme") -> Bot:
        return Bot(kube, admin, namespace, name, tenant)

    return make


def _lease_path(bot: Bot) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{bot.namespace}/leases/{bot.lease}"


def _bots_path(bot: Bot) -> str:
    return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{bot.namespace}/{PLURAL}"


def test_kubeconfig_with_client_certificate_files(kube: Any, namespace: str) -> None:
    api = KubeClient.from_kubeconfig(kube.kubeconfig)
    assert api.request("GET", f"/api/v1/namespaces/{namespace}")["metadata"]["name"] \
        == namespace


def test_kubeconfig_with_inline_data(kube: Any, namespace: str, tmp_path: Path) -> None:
    """certificate-authority-data, client-certificate-data, client-key-data, in YAML."""
    admin_cfg = yaml.safe_load(kube.kubectl("config", "view", "--raw", "--minify").stdout)
    cluster, user = admin_cfg["clusters"][0]["cluster"], admin_cfg["users"][0]["user"]
    for section, key in ((cluster, "certificate-authority"), (user, "client-certificate"),
                         (user, "client-key")):
        if key in section:
            section[f"{key}-data"] = base64.b64encode(
                Path(section.pop(key)).read_bytes()).decode()
    path = tmp_path / "inline.kubeconfig"
    path.write_text(yaml.safe_dump(admin_cfg))
    api = KubeClient.from_kubeconfig(path)
    assert api.request("GET", f"/api/v1/namespaces/{namespace}")["metadata"]["name"] \
        == namespace


def test_bot_token_kubeconfig_and_a_clear_403(make_bot: Callable[..., Bot],
                                              tmp_path: Path) -> None:
    shop, other = make_bot("shop"), make_bot("other")
    api = KubeClient.from_kubeconfig(shop.kubeconfig(tmp_path / "bot.kubeconfig"))
    assert get_own_object(api, shop.namespace, "shop")["metadata"]["name"] == "shop"
    with pytest.raises(ApiError) as err:
        get_own_object(api, shop.namespace, other.name)
    assert err.value.status == 403
    assert "cannot get resource" in str(err.value)  # the API server's own explanation
    assert shop.token not in str(err.value)


def _sa_dir(bot: Bot, tmp_path: Path, token: str) -> tuple[Path, dict[str, str]]:
    sa = tmp_path / "serviceaccount"
    sa.mkdir(exist_ok=True)
    (sa / "ca.crt").write_bytes(Path(bot.admin.configuration.ssl_ca_cert).read_bytes())
    (sa / "token").write_text(token)
    u = urllib.parse.urlsplit(bot.admin.configuration.host)
    return sa, {"KUBERNETES_SERVICE_HOST": u.hostname or "",
                "KUBERNETES_SERVICE_PORT": str(u.port)}


def test_in_cluster_token_is_reread_after_a_401(make_bot: Callable[..., Bot],
                                                tmp_path: Path) -> None:
    bot = make_bot()
    sa, env = _sa_dir(bot, tmp_path, "not-a-token")
    api = KubeClient.in_cluster(sa, env, refresh_s=3600)
    with pytest.raises(ApiError) as err:
        get_own_object(api, bot.namespace, bot.name)
    assert err.value.status == 401
    (sa / "token").write_text(bot.token)  # the kubelet rotates the projected token
    assert get_own_object(api, bot.namespace, bot.name)["metadata"]["name"] == bot.name


def test_in_cluster_token_is_reread_periodically(make_bot: Callable[..., Bot],
                                                 tmp_path: Path) -> None:
    shop, other = make_bot("shop"), make_bot("other")
    sa, env = _sa_dir(shop, tmp_path, shop.token)
    api = KubeClient.in_cluster(sa, env, refresh_s=0.0)
    assert get_own_object(api, shop.namespace, "shop")["metadata"]["name"] == "shop"
    # A token that is valid but not allowed to read "shop": a 403 shows the file was re-read
    # without waiting for a 401.
    (sa / "token").write_text(other.token)
    with pytest.raises(ApiError) as err:
        get_own_object(api, shop.namespace, "shop")
    assert err.value.status == 403


def test_a_watch_from_an_expired_resource_version_is_410(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    with pytest.raises(ApiError) as err:
        for _ in bot.api.watch(_bots_path(bot), {"fieldSelector": f"metadata.name={bot.name}",
                                                 "resourceVersion": "1"}, timeout_s=5):
            pass
    assert err.value.status == 410


def test_spec_watcher_relists_after_410_and_resumes_a_quiet_watch_without_listing(
    make_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = make_bot()
    monkeypatch.setattr(kube, "WATCH_TIMEOUT_S", 1)  # the server ends each watch after 1 s
    generation = bot.get()["metadata"]["generation"]
    seen: list[int] = []
    watcher = SpecWatcher(bot.api, bot.namespace, bot.name, metrics(),
                          on_object=lambda o: seen.append(o["metadata"]["generation"]),
                          generation=generation, resource_version="1")
    watcher.start()
    try:
        wait_for(lambda: watcher.lists == 1, timeout=20, what="the relist after 410 Gone")
        time.sleep(3.5)  # several watches end and are resumed from their resourceVersion
        assert watcher.lists == 1
        assert seen == []  # the relist showed the same generation
        bot.crd.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, bot.namespace, PLURAL, bot.name,
            {"spec": {"settings": {"ignoreGroups": False}}},
            _content_type="application/merge-patch+json")
        wait_for(lambda: seen, timeout=20, what="the spec change")
        assert seen == [generation + 1] and watcher.lists == 1
    finally:
        watcher.stop()
    assert watcher._thread is not None
    watcher._thread.join(5)
    assert not watcher._thread.is_alive()


def test_stop_ends_a_watch_blocked_on_a_quiet_stream(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    watcher = SpecWatcher(bot.api, bot.namespace, bot.name, metrics(), on_object=lambda o: None,
                          generation=bot.get()["metadata"]["generation"])
    watcher.start()
    wait_for(lambda: watcher.lists == 1 and watcher._sock is not None, timeout=20,
             what="the watch")
    time.sleep(0.5)
    started = time.monotonic()
    watcher.stop()
    assert watcher._thread is not None
    watcher._thread.join(5)
    assert not watcher._thread.is_alive() and time.monotonic() - started < 2


def test_a_lease_write_on_a_stale_resource_version_is_a_409(
    make_bot: Callable[..., Bot],
) -> None:
    bot = make_bot()
    rv = bot.api.request("GET", _lease_path(bot))["metadata"]["resourceVersion"]
    written = bot.api.request(
        "PATCH", _lease_path(bot), content_type=MERGE_PATCH,
        body={"metadata": {"resourceVersion": rv}, "spec": {"holderIdentity": "pod-1"}})
    assert written["spec"]["holderIdentity"] == "pod-1"
    with pytest.raises(ApiError) as err:
        bot.api.request("PATCH", _lease_path(bot), content_type=MERGE_PATCH,
                        body={"metadata": {"resourceVersion": rv},
                              "spec": {"holderIdentity": "pod-2"}})
    assert err.value.status == 409
    assert bot.holder() == "pod-1"


def test_a_pooled_connection_the_server_closed_is_replaced(make_bot: Callable[..., Bot]) -> None:
    bot = make_bot()
    get_own_object(bot.api, bot.namespace, bot.name)
    pooled = list(bot.api._pool)
    assert len(pooled) == 1
    sock = pooled[0][1].sock
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)  # as if the server had dropped the idle connection
    assert get_own_object(bot.api, bot.namespace, bot.name)["metadata"]["name"] == bot.name
    assert [c for _, c in bot.api._pool] != [pooled[0][1]]

