"""What every account operation (session, groups, contacts, presence) shares: one metric by
operation and result, and the translation of a failed neonize call into a clear answer.

whatsmeow reports a refusal as an error string (`neonize` raises it as an exception whose text
is whatsmeow's): "not-authorized"/"forbidden" when the bot is not an admin, "item-not-found"
when a group does not exist or the bot is not in it, ... Each is mapped to the HTTP status a
client can act on; anything else is a 502 (WhatsApp did not do it, retry later).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import Counter

from ..metrics import Metrics


class OpMetrics:
    """wabot_account_operations_total{operation, result}: bounded labels (the operation's
    name and a short result), never a JID."""

    def __init__(self, metrics: Metrics) -> None:
        ident = metrics.identity
        self._base = (ident["bot"], ident["server_name"])
        self._ops = Counter("wabot_account_operations",
                            "Session, group, contact and presence operations, by result",
                            ["bot", "server_name", "operation", "result"],
                            registry=metrics.registry)

    def observe(self, operation: str, result: str, started: float | None = None) -> None:
        del started  # kept for a latency histogram, should one be needed
        self._ops.labels(*self._base, operation, result).inc()


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


# (substring of whatsmeow's error, HTTP status, error code, what it means)
_KNOWN = (
    ("not-authorized", 403, "not_an_admin", "the bot is not an admin of this group"),
    ("forbidden", 403, "not_an_admin", "the bot is not allowed to do this in this group"),
    ("item-not-found", 404, "group_not_found",
     "no such group, or the bot is not one of its participants"),
    ("not-acceptable", 422, "not_acceptable", "WhatsApp refused the request as invalid"),
    ("gone", 410, "invite_revoked", "the invite link was revoked or has expired"),
    ("conflict", 409, "conflict", "WhatsApp reports a conflict (already a member?)"),
    ("not logged in", 503, "bot_not_connected", "the bot is not logged in to WhatsApp"),
    ("client is nil", 503, "bot_not_connected", "the bot has no WhatsApp session right now"),
    ("not connected", 503, "bot_not_connected", "the bot is not connected to WhatsApp"),
)


def refusal(exc: BaseException) -> Refusal:
    text = str(exc).lower()
    for needle, status, code, message in _KNOWN:
        if needle in text:
            return Refusal(status, code, message)
    return Refusal(502, "whatsapp_error", "WhatsApp did not carry out the request; retry later")


def started() -> float:
    return time.perf_counter()
