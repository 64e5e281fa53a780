"""The lease in Postgres: one holder across hosts, expiry after a holder dies, fencing of a stale
holder (the supervisor's use of it is in test_supervisor.py)."""
from __future__ import annotations

import time

import pytest

from tickerlake.core.lease import Lease, LeaseHeld, LeaseLost


def test_a_live_lease_keeps_its_holder_and_an_expired_one_passes_with_a_new_token(stack, settings):
    first = Lease(settings, "test_lease", ttl=3)
    token = first.acquire()
    second = Lease(settings, "test_lease", ttl=3)
    with pytest.raises(LeaseHeld, match=f"lease 'test_lease' is held by {first.holder} \\(token {token}\\)"):
        second.acquire()
    first._stop.set()  # the holder dies: its heartbeat stops, nothing releases the lease
    started = time.monotonic()
    assert second.acquire(wait=10) == token + 1
    assert time.monotonic() - started >= 1.0  # it waited for the expiry, it did not take a live lease
    with pytest.raises(LeaseLost, match="taken by another holder"):
        first.fence()  # the stale holder comes back: fenced off, it commits nothing
    second.fence()  # the new holder renews
    second.release()
    third = Lease(settings, "test_lease", ttl=3)
    assert third.acquire() == token + 2  # released: free at once, and tokens never repeat
    third.release()


def test_the_heartbeat_keeps_a_lease_alive_past_its_ttl(stack, settings):
    holder = Lease(settings, "test_heartbeat", ttl=3)
    holder.acquire()
    time.sleep(5)  # longer than the ttl: only the heartbeat's renewals keep it
    with pytest.raises(LeaseHeld):
        Lease(settings, "test_heartbeat", ttl=3).acquire()
    holder.release()
