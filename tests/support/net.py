"""Loopback helpers: a free port to listen on, and the status a URL answers with."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2) -> int:
    """The HTTP status of a GET, error statuses included; 0 when nothing answers, so a probe can
    be polled while a server is still starting."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0
