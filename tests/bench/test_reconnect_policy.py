"""The fleet-restart promise of the worker's connection rulebook: 1,000 bots re-created at the
operator's pace redial WhatsApp at most 20 times per second, reachable or not.

Fast (the simulation takes well under a second per scenario), so not marked slow: a change to
botworker.core.lifecycle or its backoff that breaks the promise fails here, not only in a benchmark
nobody reads.
"""

from __future__ import annotations

import pytest

from bench import reconnect
from bench.common import peak_rate

N = 1000


@pytest.mark.parametrize("reachable", [True, False], ids=["reachable", "outage"])
@pytest.mark.parametrize("seed", [1, 7, 23])
def test_a_paced_fleet_restart_stays_within_20_dials_per_second(reachable: bool,
                                                                  seed: int) -> None:
    starts = reconnect.paced_starts(N)  # one pod every 0.25 s, the operator's default
    dials = reconnect.simulate(starts, reachable=reachable, seed=seed)
    assert len(dials) >= N  # every worker dialled
    assert peak_rate(dials, 1.0) <= 20
    assert peak_rate(dials, 10.0) <= 20


def test_clumped_pod_starts_are_spread_too() -> None:
    """Nodes report pods Running in clumps (26 in one second in a measured restart): the same
    4/s on average, but 25 pods at once every 6.25 s."""
    starts = [6.25 * (i // 25) for i in range(N)]
    for reachable in (True, False):
        dials = reconnect.simulate(starts, reachable=reachable)
        assert peak_rate(dials, 1.0) <= 20
        assert peak_rate(dials, 10.0) <= 20


def test_the_previous_policy_did_not_and_new_bots_still_dial_at_once() -> None:
    starts = reconnect.paced_starts(N)
    before = reconnect.simulate(starts, reachable=False, policy=reconnect.previous_policy())
    assert peak_rate(before, 10.0) > 20  # what the resume rules fix
    # New bots (no linked session) are not spread: each dials the moment it gets its Lease.
    new = reconnect.simulate(starts[:10], reachable=True, resuming=False)
    assert new == starts[:10]
