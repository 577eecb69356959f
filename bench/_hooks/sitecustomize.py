"""Counts the API requests of the process it is loaded into, at the client.

The benchmarks put this directory on PYTHONPATH of the operator they start (`python -m
wabot_operator`, unchanged); Python imports `sitecustomize` at start-up. With
WABOT_BENCH_REQUEST_LOG set it wraps the two HTTP clients the operator uses - the
`kubernetes` client (urllib3; the reconcile passes) and aiohttp (kopf: watches, finalizers,
Events, status) - and appends one JSON line per second to that file:
`{"t": <unix second>, "n": {"<client> <VERB> <resource>": count, ...}, "ms": {key: summed
milliseconds until the response headers}}`. A watch is counted once, when it is opened.
Without the variable it does nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any

_PATH = os.environ.get("WABOT_BENCH_REQUEST_LOG")
_lock = threading.Lock()
_counts: dict[int, Counter[str]] = {}
_seconds: dict[int, dict[str, float]] = {}  # summed durations (ms) of non-watch requests


def _resource(path: str) -> str:
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        rest = parts[i + 2:]
        if not rest:
            return "namespaces"
    else:
        # /api/v1/<res>... or /apis/<group>/<version>/<res>...
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if not rest:
        return "discovery"
    return rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")


def _record(client: str, method: str, url: str, watch: bool) -> str:
    from urllib.parse import urlsplit

    verb = "WATCH" if watch else method.upper()
    key = f"{client} {verb} {_resource(urlsplit(url).path)}"
    second = int(time.time())
    with _lock:
        _counts.setdefault(second, Counter())[key] += 1
    return key


def _took(key: str, started: float) -> None:
    ms = (time.monotonic() - started) * 1000.0
    with _lock:
        bucket = _seconds.setdefault(int(time.time()), {})
        bucket[key] = bucket.get(key, 0.0) + ms


def _is_watch(url: str, params: Any) -> bool:
    if "watch=true" in url or "watch=1" in url or "watch=True" in url:
        return True
    if isinstance(params, dict):
        return str(params.get("watch", "")).lower() in ("true", "1")
    if isinstance(params, (list, tuple)):
        return any(k == "watch" and str(v).lower() in ("true", "1") for k, v in params)
    return False


def _flush_forever() -> None:
    assert _PATH is not None
    while True:
        time.sleep(1.0)
        now = int(time.time())
        with _lock:
            done = {s: c for s, c in _counts.items() if s < now}
            for s in done:
                del _counts[s]
            took = {s: c for s, c in _seconds.items() if s < now}
            for s in took:
                del _seconds[s]
        if done or took:
            with open(_PATH, "a") as f:
                for s in sorted(set(done) | set(took)):
                    f.write(json.dumps({"t": s, "n": dict(done.get(s, {})),
                                        "ms": {k: round(v, 1) for k, v in
                                               took.get(s, {}).items()}}) + "\n")


def _install() -> None:
    try:
        from kubernetes.client import rest

        original = rest.RESTClientObject.request

        def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            params = kwargs.get("query_params") or (args[0] if args else None)
            watch = _is_watch(url, params)
            key = _record("kube", method, url, watch)
            started = time.monotonic()
            try:
                return original(self, method, url, *args, **kwargs)  # type: ignore[no-untyped-call]
            finally:
                if not watch:
                    _took(key, started)

        rest.RESTClientObject.request = request  # type: ignore[method-assign]
    except ImportError:
        pass
    try:
        import aiohttp

        original_async = aiohttp.ClientSession._request

        async def _request(self: Any, method: str, str_or_url: Any, *args: Any,
                           **kwargs: Any) -> Any:
            watch = _is_watch(str(str_or_url), kwargs.get("params"))
            key = _record("kopf", method, str(str_or_url), watch)
            started = time.monotonic()
            try:
                return await original_async(self, method, str_or_url, *args, **kwargs)
            finally:
                if not watch:
                    _took(key, started)

        aiohttp.ClientSession._request = _request  # type: ignore[method-assign]
    except ImportError:
        pass
    threading.Thread(target=_flush_forever, name="bench-request-log", daemon=True).start()


if _PATH:
    _install()
