"""Every connection this process makes to the API server is set up here: the `kubernetes`
client behind kube.Kube (the reconcile passes, the start-up listings, the peering object) and
kopf's own aiohttp session (watches, finalizer patches, Events). Both pools are sized, since
neither client's default suits a process that may have dozens of requests in flight."""

from __future__ import annotations

import aiohttp
import kopf
from kubernetes import client
from kubernetes import config as kube_config


def api_client(connections: int) -> client.ApiClient:
    """The pod's service account, else the kubeconfig, with a pool of `connections`: one per
    thread that can be in a request at once, since urllib3 opens a connection beyond the
    pool's size and then throws it away (a TLS handshake on both sides each time)."""
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        configuration = client.Configuration.get_default_copy()
    except kube_config.ConfigException:
        configuration = client.Configuration()
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def kopf_session(info: kopf.ConnectionInfo, connections: int) -> kopf.AiohttpSession:
    """kopf's session for the credentials `info` (kopf.login_via_client), on a pool of
    `connections` (kopf's own is unlimited)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(), proxy=info.proxy_url, trust_env=info.trust_env)
    return kopf.AiohttpSession(server=info.server, default_namespace=info.default_namespace,
                               expiration=info.expiration, priority=info.priority,
                               aiohttp_session=session)
