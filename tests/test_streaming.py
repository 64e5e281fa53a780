"""The streaming lane: producer -> Kafka -> Spark's Kafka source -> Iceberg `realtime.ticks` and bars.

Every event is in `realtime.ticks` exactly once, producer re-sends are removed, malformed and
too-late events are in the quarantine with their reason, and the bars equal a batch recompute.
Faults under a running stream (restarts, SIGKILLs): tests/test_chaos.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from ingestion.producer import SyntheticTicks, publish
from spark_jobs.compare_bars import compare_minute_bars
from spark_jobs.stream_ticks import minute_bars
from tickerlake.core.clients import kafka_producer
from tickerlake.core.settings import REPO_ROOT

pytestmark = pytest.mark.spark


def produce(settings, count: int, resend_every: int = 0, **options) -> list[dict]:
    """Publish `count` events (and, with `resend_every`, a second copy of every n-th: a producer
    re-send); returns the events as sent (malformed ones as {"event_id": None})."""
    records = list(SyntheticTicks(**options).events(count))
    if resend_every:
        records += records[::resend_every]
    producer = kafka_producer(settings.kafka)
    publish(records, producer)
    out = []
    for _, value in records:
        try:
            out.append(json.loads(value))
        except ValueError:
            out.append({"event_id": None})
    return out


def stream(*args: str, max_offsets: int = 500, output=subprocess.PIPE) -> subprocess.Popen:
    """The stream job. Its output goes to a pipe only for a caller that reads it at once
    (`communicate`); a job left running gets a file: a full pipe blocks the JVM's log writes and
    with them every micro-batch."""
    env = {**os.environ, "TICKERLAKE_STREAM_TRIGGER_SECONDS": "1",
           "TICKERLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER": str(max_offsets)}
    return subprocess.Popen([sys.executable, "-m", "spark_jobs.stream_ticks", *args], cwd=REPO_ROOT, env=env,
                            stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def ticks_batches(s3) -> int:
    """The ticks query's last committed batch id (-1: none yet)."""
    from tickerlake.core.stream_progress import TICKS_QUERY, read_progress

    return int(((read_progress(s3) or {}).get("queries", {}).get(TICKS_QUERY) or {}).get("batchId", -1))


def valid(event: dict) -> bool:
    return bool(event.get("event_id")) and isinstance(event.get("price"), (int, float)) and event["price"] > 0


@pytest.fixture(scope="module")
def caught_up(stack, settings):
    """The topic gets well-formed events with producer re-sends and malformed ones, events late
    inside the watermark and too late, then 10,000 fuzzed records; two `--available-now` runs
    read it all (the first before the late events). (Kills and restarts under a running stream: tests/test_chaos.py.)"""
    from tests.fuzz_inputs import malformed_ticks, tolerated_ticks
    from tickerlake.core.stream_progress import kafka_lag

    before = kafka_lag(settings, {})  # the topic's end offsets: what follows is this module's
    first = produce(settings, seed=21, count=3000, malformed_every=97, resend_every=50)
    # A first run takes these in: its commits carry the event-time watermark the rest is judged by.
    job = stream("--available-now", max_offsets=1000)
    out, _ = job.communicate(timeout=900)
    assert job.returncode == 0, out[-3000:]
    second = produce(settings, seed=22, count=400, late_every=9, late_by=timedelta(minutes=2))
    too_late = produce(settings, seed=23, count=200, late_every=10, late_by=timedelta(hours=2))
    fuzz_from = kafka_lag(settings, {})
    bad = malformed_ticks(10_000, seed=7)
    good = tolerated_ticks(300)
    producer = kafka_producer(settings.kafka)
    publish([record for _, record in bad], producer)  # one key: one partition, offsets in order
    publish([(e["symbol"].encode(), json.dumps(e).encode()) for e in good + good[:50]], producer)

    job = stream("--available-now", max_offsets=5000)
    out, _ = job.communicate(timeout=900)
    assert job.returncode == 0, out[-3000:]
    return {"log": out, "before": before, "fuzz_from": fuzz_from, "first": first, "second": second,
            "too_late": too_late, "bad": bad, "good": good}


def offsets(start: dict[int, int], end: dict[int, int] | None = None) -> str:
    """A filter on the records at [start, end) of each partition."""
    return " OR ".join(f"(kafka_partition = {p} AND kafka_offset >= {o}"
                       + (f" AND kafka_offset < {end[p]})" if end else ")") for p, o in start.items())


def test_every_event_is_kept_once_and_the_malformed_and_too_late_are_quarantined(caught_up, settings, spark):
    assert "reading the ticks topic with Spark's Kafka source" in caught_up["log"]
    # Other tests share the topic: judge this test's events.
    events = caught_up["first"] + caught_up["second"] + caught_up["too_late"]
    ours = {e["event_id"] for e in events if e.get("event_id")}
    well_formed = {e["event_id"] for e in events if valid(e)}
    rejected_late = {e["event_id"] for e in caught_up["too_late"][9::10]}
    catalog = settings.iceberg.catalog

    ticks = spark.table(f"{catalog}.realtime.ticks")
    ids = [r.event_id for r in ticks.select("event_id").collect()]
    assert len(ids) == len(set(ids)), "an event is in realtime.ticks twice"
    assert set(ids) & ours == well_formed - rejected_late

    # The quarantine holds exactly the malformed events (a re-sent one once: it has its event id;
    # a broken record every time: it has none) and the too-late ones, each with its reason.
    quarantine = spark.table(f"{catalog}.realtime.quarantine_ticks").where(
        offsets(caught_up["before"], caught_up["fuzz_from"])).toPandas()
    bad_with_id = {e["event_id"] for e in events if e.get("event_id") and not valid(e)}
    broken = sum(1 for e in events if not e.get("event_id"))
    late_rows = quarantine[quarantine["reason"] == "later than the watermark"]
    assert {json.loads(v)["event_id"] for v in late_rows["value"]} == rejected_late
    assert len(late_rows) == len(rejected_late)
    assert len(quarantine) == len(bad_with_id) + broken + len(rejected_late)
    assert set(quarantine["reason"]) >= {"not JSON", "missing or unparsable price", "non-positive price"}

    differences = compare_minute_bars(spark, settings)
    assert differences.count == 0, differences.lines()
    five = spark.table(f"{catalog}.realtime.bars_5m").count()
    assert five > 0


def test_the_batch_recompute_finds_a_changed_bar(stack, settings, spark):
    """The stream-equals-batch check can fail: a bar changed behind the stream's back is found."""
    from spark_jobs.compare_bars import compare_minute_bars

    catalog = settings.iceberg.catalog
    row = spark.table(f"{catalog}.realtime.bars_1m").orderBy("window_start").first()
    assert row is not None
    spark.sql(f"UPDATE {catalog}.realtime.bars_1m SET close = close + 1 "
              f"WHERE symbol = '{row.symbol}' AND window_start = TIMESTAMP'{row.window_start}'")
    try:
        differences = compare_minute_bars(spark, settings)
        assert differences.count == 1 and row.symbol in differences.lines()[0]
    finally:
        spark.sql(f"UPDATE {catalog}.realtime.bars_1m SET close = close - 1 "
                  f"WHERE symbol = '{row.symbol}' AND window_start = TIMESTAMP'{row.window_start}'")


def test_minute_bars_from_a_batch_of_ticks(spark):
    from datetime import datetime

    rows = [("AAA", datetime(2026, 1, 2, 15, 0, s), float(p), size, 0, i)
            for i, (s, p, size) in enumerate([(1, 10, 5), (30, 12, 1), (59, 11, 4)])]
    ticks = spark.createDataFrame(rows, "symbol STRING, event_time TIMESTAMP, price DOUBLE, size BIGINT, "
                                        "kafka_partition INT, kafka_offset BIGINT")
    [bar] = minute_bars(ticks, 60).collect()
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (10.0, 12.0, 10.0, 11.0, 10, 3)
    assert bar.vwap == pytest.approx((10 * 5 + 12 + 11 * 4) / 10)


def test_ten_thousand_malformed_records_are_each_quarantined_with_a_reason(caught_up, settings, spark):
    """Fuzz: every kind of tests/fuzz_inputs.MALFORMED in turn, then well-formed events with unknown
    fields (kept: a newer producer) and re-sends of some of them (kept once)."""
    ends, bad, good = caught_up["fuzz_from"], caught_up["bad"], caught_up["good"]
    catalog = settings.iceberg.catalog
    ours = offsets(ends)
    quarantine = spark.table(f"{catalog}.realtime.quarantine_ticks").where(ours).toPandas()
    assert len(quarantine) == len(bad) and quarantine["reason"].notna().all()
    partition = int(quarantine["kafka_partition"].mode()[0])
    assert (quarantine["kafka_partition"] == partition).all()
    kinds = {ends[partition] + i: kind for i, (kind, _) in enumerate(bad)}
    reasons: dict[str, set[str]] = {}
    for offset, reason in zip(quarantine["kafka_offset"], quarantine["reason"]):
        reasons.setdefault(kinds[int(offset)], set()).add(reason)
    assert set(reasons) == {kind for kind, _ in bad}  # every kind, every record
    assert reasons["far-future time"] == {"event_time more than 300s after the broker received it"}
    assert reasons["far-past time"] == {"event_time before 1980-01-01"}
    assert reasons["huge symbol"] == reasons["symbol with SQL"] == {"invalid symbol"}
    # a bare Infinity/NaN token is not JSON; the string "Infinity" parses to an infinite price
    assert reasons["infinite price"] <= {"missing or unparsable price", "not JSON"}

    ticks = spark.table(f"{catalog}.realtime.ticks").where(ours).select("event_id").collect()
    assert sorted(r.event_id for r in ticks) == sorted(e["event_id"] for e in good)  # kept, once each
