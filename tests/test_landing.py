"""Kafka -> landing files, exactly once: kill the sink (SIGKILL) mid-stream, restart it, and every
produced event is in the landing objects once, with contiguous, non-overlapping offset ranges."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC

from ingestion.producer import SyntheticTicks, publish
from tickerlake.core.clients import kafka_producer
from tickerlake.core.landing import durable_positions
from tickerlake.core.names import LANDING_TICKS_PREFIX, Bucket, Topic, parse_landing_key
from tickerlake.core.s3 import iter_keys
from tickerlake.core.settings import REPO_ROOT


def landed(s3) -> list[dict]:
    lines = []
    for key in iter_keys(s3, Bucket.RAW.value, LANDING_TICKS_PREFIX):
        body = s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"].read().decode()
        partition, first, last = parse_landing_key(key)
        rows = [json.loads(line) for line in body.splitlines()]
        assert (rows[0]["offset"], rows[-1]["offset"], len(rows)) == (first, last, last - first + 1)
        assert {r["partition"] for r in rows} == {partition}
        lines += rows
    return lines


def sink(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ingestion.landing_sink", *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_producer_events_are_keyed_unique_and_well_formed():
    events = list(SyntheticTicks(seed=1, run_id=7).events(200))
    ids = [json.loads(v)["event_id"] for _, v in events]
    assert len(set(ids)) == 200
    assert all(json.loads(v)["symbol"].encode() == k for k, v in events)
    other_run = [json.loads(v)["event_id"] for _, v in SyntheticTicks(seed=1, run_id=8).events(200)]
    assert not set(ids) & set(other_run)


def test_producer_injects_malformed_and_late_events_on_request():
    from datetime import datetime, timedelta

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


def test_sink_killed_mid_stream_lands_every_event_exactly_once(stack, settings, s3):
    producer = kafka_producer(settings.kafka)
    ids = []
    first = list(SyntheticTicks(seed=3).events(3000))
    ids += [json.loads(v)["event_id"] for _, v in first]
    publish(first, producer, Topic.TICKS.value)

    running = sink("--max-records", "100", "--max-seconds", "0.5")
    deadline = time.monotonic() + 60
    while sum(1 for _ in _objects(s3)) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    running.send_signal(signal.SIGKILL)  # mid-stream: buffers lost, some objects written
    running.wait(timeout=10)
    partial = len(landed(s3))
    assert 0 < partial < 3000, "the sink should have been killed part-way"

    second = list(SyntheticTicks(seed=4).events(1000))
    ids += [json.loads(v)["event_id"] for _, v in second]
    publish(second, producer, Topic.TICKS.value)
    producer.close()

    restarted = sink("--max-records", "500", "--max-seconds", "0.5", "--idle-exit", "3")
    out, _ = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, out

    rows = landed(s3)
    landed_ids = [json.loads(r["value"])["event_id"] for r in rows]
    assert len(landed_ids) == len(ids) and set(landed_ids) == set(ids)  # none lost, none twice
    by_partition: dict[int, list[int]] = {}
    for row in rows:
        by_partition.setdefault(row["partition"], []).append(row["offset"])
    for offsets in by_partition.values():
        assert sorted(offsets) == list(range(min(offsets), max(offsets) + 1))
    assert durable_positions(s3) == {p: max(o) + 1 for p, o in by_partition.items()}


def _objects(s3):
    return iter_keys(s3, Bucket.RAW.value, LANDING_TICKS_PREFIX)
