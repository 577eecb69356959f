"""The one exponential ceiling both retry loops share: a worker redialling WhatsApp
(botworker.core.backoff, full jitter) and the fleet supervisor restarting a crashed bot process
(fleet.policy, equal jitter). They jitter differently on purpose; the growth and the cap are
the same rule and live here once.
"""

from __future__ import annotations


def capped_exponential(base_s: float, cap_s: float, attempt: int) -> float:
    """`base_s * 2**(attempt-1)`, at most `cap_s`; 0 before the first attempt.

    The exponent is clamped so a very long outage (thousands of attempts) cannot overflow.
    """
    if attempt <= 0:
        return 0.0
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 62)))
