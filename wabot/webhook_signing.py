"""How a webhook delivery is signed (README, "Receiving webhooks"): the worker signs, a receiver
verifies. Apart from wabot/events.py (which re-exports both) so the worker's delivery thread
signs without loading the event models (pydantic, bench/PROFILE-density.md). No I/O.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """X-Wabot-Signature: HMAC-SHA256 over "{timestamp}.{body}", hex, prefixed "sha256="."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float,
           tolerance_s: float = 300.0) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (replays of
    an old delivery are refused)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
