"""The console's one view of the fleet: ONE watch on WhatsAppBots per gateway process (one per
served namespace when the gateway serves a list of them), shared by every browser.

The watch runs in a thread (the official client is synchronous) and hands each change to the
event loop; every open page (a server-sent-events stream) holds only the set of bots changed
since it last sent, so a burst of changes costs a page one message, not one per change, and no
browser ever makes the gateway poll the API server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge

from wabot.console import views
from wabot.spec import API_GROUP, API_VERSION, PLURAL

log = logging.getLogger("wabot.gateway.console")
Key = tuple[str, str]
WATCH_SECONDS = 240


class Subscriber:
    """One open page: the keys of the bots changed since it last sent."""

    def __init__(self) -> None:
        self.changed: set[Key] = set()
        self.wake = asyncio.Event()
        self.resync = False

    def mark(self, key: Key) -> None:
        self.changed.add(key)
        self.wake.set()

    def take(self) -> set[Key]:
        keys, self.changed = self.changed, set()
        self.wake.clear()
        return keys


class Fleet:
    """The bots the gateway serves, as the watch last saw them."""

    def __init__(self, api_client: Any, namespaces: tuple[str, ...],
                 registry: CollectorRegistry | None = None) -> None:
        self._custom = k8s.CustomObjectsApi(api_client)
        self._namespaces = namespaces
        self.objects: dict[Key, dict[str, Any]] = {}
        self.rows: dict[Key, dict[str, Any]] = {}
        self.details: dict[Key, dict[str, Any]] = {}
        self.subscribers: set[Subscriber] = set()
        self.synced = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._watches: list[k8s_watch.Watch] = []
        self._pending_sync = 0
        self.closing = False
        # On the gateway's /metrics: what the console costs the API server, whatever the
        # number of open pages (which is the streams gauge).
        registry = registry or CollectorRegistry()
        self.lists = Counter("wabot_console_watch_lists", "LISTs of WhatsAppBots by the "
                             "console's watch (at start and after a watch expired)",
                             registry=registry)
        self.watches = Gauge("wabot_console_watches", "Open watches on WhatsAppBots",
                             registry=registry)
        self.streams = Gauge("wabot_console_streams", "Open console pages (event streams)",
                             registry=registry)
        Gauge("wabot_console_bots", "Bots in the console's view", registry=registry
              ).set_function(lambda: len(self.objects))

    # --- what pages read ---------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    # --- the watch ---------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        scopes: tuple[str, ...] = self._namespaces or ("",)
        self._pending_sync = len(scopes)
        for ns in scopes:
            threading.Thread(target=self._run, args=(ns,), daemon=True,
                             name=f"console-watch-{ns or 'all'}").start()

    def close_streams(self) -> None:
        """At shutdown: every open page's stream ends now (its browser reconnects to another
        replica), instead of holding the process until the grace period runs out."""
        self.closing = True
        for sub in self.subscribers:
            sub.wake.set()

    def stop(self) -> None:
        self._stop.set()
        for w in list(self._watches):
            w.stop()  # type: ignore[no-untyped-call]

    def _list(self, ns: str) -> Any:
        if ns:
            return self._custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, PLURAL, _request_timeout=(5.0, 60.0))
        return self._custom.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL,
                                                       _request_timeout=(5.0, 60.0))

    def _run(self, ns: str) -> None:
        """List, then watch from the list's resourceVersion; relist when it is too old."""
        delay = 1.0
        first = True
        while not self._stop.is_set():
            try:
                self.lists.inc()
                listing = self._list(ns)
                rv = listing["metadata"]["resourceVersion"]
                self._post(self._replace, ns, listing["items"], first)
                first, delay = False, 1.0
                rv = self._watch(ns, rv)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watching WhatsAppBots in %s: HTTP %s; retrying in %.0f s",
                                ns or "all namespaces", exc.status, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # the connection dropped: list again after a pause
                log.warning("watching WhatsAppBots in %s: %s; retrying in %.0f s",
                            ns or "all namespaces", type(exc).__name__, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _watch(self, ns: str, rv: str) -> str:
        while not self._stop.is_set():
            w = k8s_watch.Watch()  # type: ignore[no-untyped-call]
            self._watches.append(w)
            self.watches.inc()
            args: tuple[Any, ...] = (API_GROUP, API_VERSION, ns, PLURAL) if ns else (
                API_GROUP, API_VERSION, PLURAL)
            func: Callable[..., Any] = (self._custom.list_namespaced_custom_object if ns
                                        else self._custom.list_cluster_custom_object)
            try:
                events = w.stream(  # type: ignore[no-untyped-call]
                    func, *args, resource_version=rv, allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS, _request_timeout=(5.0, WATCH_SECONDS + 30))
                for ev in events:
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._post(self._apply, ev["type"], obj)
            finally:
                self._watches.remove(w)
                self.watches.dec()
        return rv

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # --- on the event loop -------------------------------------------------------------------

    def _replace(self, ns: str, items: list[dict[str, Any]], first: bool) -> None:
        seen: set[Key] = set()
        for obj in items:
            seen.add(self._store(obj))
        for key in [k for k in self.objects if (not ns or k[0] == ns) and k not in seen]:
            self._drop(key)
        if first:
            self._pending_sync -= 1
            if self._pending_sync <= 0:
                self.synced.set()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            self._drop(key)
        else:
            self._store(obj)

    def _store(self, obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        self.objects[key] = obj
        new = views.detail(obj)
        if self.details.get(key) != new:
            self.details[key] = new
            self.rows[key] = views.row(obj)
            self._notify(key)
        return key

    def _drop(self, key: Key) -> None:
        if self.objects.pop(key, None) is not None:
            self.rows.pop(key, None)
            self.details.pop(key, None)
            self._notify(key)

    def _notify(self, key: Key) -> None:
        for sub in self.subscribers:
            sub.mark(key)

    async def wait_synced(self, timeout: float = 30.0) -> bool:
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except TimeoutError:
            return False
        return True
