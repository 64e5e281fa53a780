"""Chaos, the suite's variant of `make chaos` (tickerlake/dev/chaos.py), on a stack of its own:
the stream runs with a producer and supervision rounds while the broker, the S3 store and Postgres
are restarted once each and the stream job is SIGKILLed three times, in a seeded random order."""
from __future__ import annotations

import pytest

from tickerlake.dev.chaos import PROFILES, Fault, Verdict, run

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def verdict() -> Verdict:
    result = run(PROFILES["ci"], seed=20261202)
    print(result.table())
    return result


def test_the_stream_recovers_from_every_restart_and_kill_and_doubles_nothing(verdict):
    table = verdict.table()
    assert sorted(o.fault for o in verdict.outcomes) == sorted(
        [Fault.RESTART_KAFKA, Fault.RESTART_S3, Fault.RESTART_POSTGRES] + [Fault.KILL_STREAM] * 3), table
    assert all(o.recovered for o in verdict.outcomes), table
    # a service restart fails at most the queries, which start again in the same job (no new JVM)
    assert all(o.job_kept for o in verdict.outcomes if o.fault is not Fault.KILL_STREAM), table
    assert verdict.acknowledged > 1000, table  # the producer kept sending through the faults
    assert (verdict.duplicated, verdict.changed, verdict.unexpected) == (0, 0, 0), table
    assert verdict.quarantined == 0, table  # nothing turned "late" or malformed by a fault
    assert verdict.bar_differences == 0, table  # the 1-minute bars equal a batch recompute


def test_no_acknowledged_event_is_lost(verdict):
    # the broker's restart included: the stack stops it with its own `stop kafka` first
    # (tickerlake/dev/services.py KafkaBroker.down; test_services.py checks the broker alone)
    assert verdict.lost == 0, verdict.table()
