"""The status's two enumerations without pydantic: the worker compares and reports its state
with them and must not load the status models to do so (bench/PROFILE-density.md, "pydantic out
of the worker"). wabot/status.py uses and re-exports them; they are the same objects.
"""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PAIRING = "Pairing"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    LOGGED_OUT = "LoggedOut"
    SUSPENDED = "Suspended"
    FAILED = "Failed"


class WorkerState(enum.StrEnum):
    """What the worker last saw of its WhatsApp session (written to status.worker.state)."""

    STARTING = "Starting"
    PAIRING = "Pairing"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"
    LOGGED_OUT = "LoggedOut"
    STREAM_REPLACED = "StreamReplaced"
    TEMPORARY_BAN = "TemporaryBan"
    STOPPED = "Stopped"
