"""The producer: keyed, unique event ids, malformed and late events on request."""
from __future__ import annotations

import json

from ingestion.producer import SyntheticTicks


def test_producer_events_are_keyed_unique_and_well_formed():
    events = list(SyntheticTicks(seed=1, run_id=7).events(200))
    ids = [json.loads(v)["event_id"] for _, v in events]
    assert len(set(ids)) == 200
    assert all(json.loads(v)["symbol"].encode() == k for k, v in events)
    other_run = [json.loads(v)["event_id"] for _, v in SyntheticTicks(seed=1, run_id=8).events(200)]
    assert not set(ids) & set(other_run)


def test_producer_injects_malformed_and_late_events_on_request():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    ticks = SyntheticTicks(seed=1, malformed_every=10, late_every=7, late_by=timedelta(minutes=30),
                           clock=lambda: now)
    events = [v for _, v in ticks.events(70)]
    broken = [n for n, v in enumerate(events, 1) if not _valid(v)]
    assert broken == list(range(10, 71, 10))
    late = [n for n, v in enumerate(events, 1) if _valid(v)
            and datetime.fromisoformat(json.loads(v)["event_time"]) == now - timedelta(minutes=30)]
    on_time = [n for n, v in enumerate(events, 1) if _valid(v)
               and datetime.fromisoformat(json.loads(v)["event_time"]) == now]
    assert late == [7, 14, 21, 28, 35, 42, 49, 56, 63]  # every 7th; the 70th is malformed instead
    assert len(late) + len(on_time) + len(broken) == 70


def _valid(value: bytes) -> bool:
    try:
        event = json.loads(value)
    except ValueError:
        return False
    return "price" in event and event["price"] > 0


def test_a_producer_started_with_a_job_waits_for_that_job_not_an_earlier_one():
    from tickerlake.core.stream_progress import ready_since

    assert ready_since({"ready": True, "written_at": 100.0}, since=99.0)
    assert not ready_since({"ready": True, "written_at": 98.0}, since=99.0)  # an earlier job's progress
    assert not ready_since({"ready": False, "written_at": 100.0}, since=99.0)  # still warming up
    assert not ready_since(None, since=0.0)  # no job has written one yet
