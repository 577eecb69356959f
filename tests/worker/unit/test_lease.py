"""Lease election rules (client-go's): judged by the local clock, conditional writes."""

from __future__ import annotations

from datetime import UTC, datetime

from botworker.core import lease as lz

T = lz.Timing(duration_s=15.0)


def rec(holder: str | None, rv: str = "1", renew: str = "t0") -> lz.LeaseRecord:
    return lz.LeaseRecord(holder, 15, None if renew is None else datetime(2030, 1, 1, tzinfo=UTC),
                          None, 2, rv)


def test_empty_lease_is_taken_at_once() -> None:
    r = rec(None)
    obs = lz.observe(None, r, 100.0)
    assert lz.decide(r, "me", obs, 100.0, 15) == "acquire"


def test_own_lease_is_renewed() -> None:
    r = rec("me")
    assert lz.decide(r, "me", lz.observe(None, r, 0.0), 0.0, 15) == "renew"


def test_someone_elses_lease_is_respected_until_unchanged_for_a_duration() -> None:
    r = rec("other", rv="7")
    obs = lz.observe(None, r, 100.0)
    assert lz.decide(r, "me", obs, 114.9, 15) == "wait"
    obs = lz.observe(obs, r, 110.0)  # same record seen again: the clock keeps running
    assert obs.observed_at == 100.0
    assert lz.decide(r, "me", obs, 115.0, 15) == "acquire"


def test_a_renewal_resets_the_expiry_clock() -> None:
    r1 = rec("other", rv="7")
    obs = lz.observe(None, r1, 100.0)
    r2 = rec("other", rv="8")
    obs = lz.observe(obs, r2, 112.0)
    assert lz.decide(r2, "me", obs, 120.0, 15) == "wait"


def test_holder_fences_before_a_contender_can_take_over() -> None:
    assert T.renew_interval_s == 5.0 and T.renew_deadline_s == 10.0
    assert not lz.must_fence(100.0, 109.9, T)
    assert lz.must_fence(100.0, 110.0, T)
    assert lz.must_fence(None, 0.0, T)
    # A contender that saw the last renewal no earlier than the holder sent it waits a full
    # duration; the holder stopped a third of a duration before that.
    assert T.renew_deadline_s < T.duration_s


def test_patches_are_conditional_on_the_resource_version() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    take = lz.claim_patch(rec("other", rv="42"), "me", now, 15)
    assert take["metadata"] == {"resourceVersion": "42"}
    assert take["spec"]["holderIdentity"] == "me"
    assert take["spec"]["acquireTime"] == "2030-01-02T03:04:05.600000Z"
    assert take["spec"]["leaseTransitions"] == 3
    renew = lz.claim_patch(rec("me", rv="43"), "me", now, 15)
    assert "acquireTime" not in renew["spec"] and renew["spec"]["renewTime"]
    release = lz.release_patch(rec("me", rv="44"))
    assert release["spec"]["holderIdentity"] is None
    assert release["metadata"] == {"resourceVersion": "44"}
