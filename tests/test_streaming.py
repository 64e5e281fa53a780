"""The streaming lane, landing mode: producer -> Kafka -> landing sink -> Spark Structured
Streaming -> realtime Parquet + Iceberg. The job is SIGKILLed (its whole process group: driver
and JVM) mid-stream and restarted: every event is in the lake exactly once, malformed and too-late
events are in quarantine with reasons, and the bars equal a recomputation from the ticks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import numpy as np
import pytest

from ingestion.landing_sink import LandingSink
from ingestion.producer import SyntheticTicks, publish
from spark_jobs.stream_ticks import bars_from_ticks
from tickerlake.core.clients import kafka_producer
from tickerlake.core.names import REALTIME_QUARANTINE_PREFIX, REALTIME_TICKS_PREFIX, STREAM_STATE_PREFIX, Bucket
from tickerlake.core.settings import REPO_ROOT
from tickerlake.core.spark import kafka_source_available

pytestmark = pytest.mark.spark


def produce(settings, count: int, **options) -> list[dict]:
    records = list(SyntheticTicks(**options).events(count))
    producer = kafka_producer(settings.kafka)
    publish(records, producer)
    producer.close()
    out = []
    for _, value in records:
        try:
            out.append(json.loads(value))
        except ValueError:
            out.append({"event_id": None})
    return out


def land(settings, s3) -> None:
    LandingSink(settings.kafka, s3, max_records=200, max_seconds=0.5).run(idle_exit=2)


def stream(*args: str, files_per_trigger: int = 1) -> subprocess.Popen:
    env = {**os.environ, "TICKERLAKE_STREAM_SOURCE": "landing", "TICKERLAKE_STREAM_TRIGGER_SECONDS": "1",
           "TICKERLAKE_STREAM_MAX_FILES_PER_TRIGGER": str(files_per_trigger)}
    return subprocess.Popen([sys.executable, "-m", "spark_jobs.stream_ticks", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def iceberg_batches(s3) -> int:
    try:
        body = s3.get_object(Bucket=Bucket.REALTIME.value, Key=f"{STREAM_STATE_PREFIX}/progress.json")["Body"]
    except s3.exceptions.NoSuchKey:
        return -1
    progress = json.loads(body.read())["queries"].get("ticks_iceberg") or {}
    return int(progress.get("batchId", -1))


def valid(event: dict) -> bool:
    return bool(event.get("event_id")) and isinstance(event.get("price"), (int, float)) and event["price"] > 0


def test_killed_stream_restarts_with_every_event_exactly_once(stack, settings, s3, spark):
    first = produce(settings, seed=21, count=3000, malformed_every=97)
    land(settings, s3)

    job = stream()
    deadline = time.monotonic() + 180
    while iceberg_batches(s3) < 1 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.5)
    assert job.poll() is None, job.stdout.read()[-3000:]
    assert iceberg_batches(s3) >= 1, "the stream made no progress before the kill"
    os.killpg(job.pid, signal.SIGKILL)  # the driver and its JVM, mid-stream
    job.wait(timeout=30)

    # More events while it is down: some late inside the watermark, some too late.
    second = produce(settings, seed=22, count=400, late_every=9, late_by=timedelta(minutes=2))
    too_late = produce(settings, seed=23, count=200, late_every=10, late_by=timedelta(hours=2))
    land(settings, s3)

    restarted = stream("--available-now", files_per_trigger=10)
    out, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, out[-3000:]
    assert "reading the ticks topic with the landing source" in out

    # Other tests share the topic and the landing prefix: judge this test's events.
    events = first + second + too_late
    ours = {e["event_id"] for e in events if e.get("event_id")}
    well_formed = {e["event_id"] for e in events if valid(e)}
    rejected_late = {e["event_id"] for e in too_late[9::10]}
    catalog = settings.iceberg.catalog

    ticks = spark.table(f"{catalog}.realtime.ticks")
    ids = [r.event_id for r in ticks.select("event_id").collect()]
    assert len(ids) == len(set(ids)), "an event is in realtime.ticks twice"
    assert set(ids) & ours == well_formed - rejected_late

    parquet = spark.read.parquet(Bucket.REALTIME.s3a(REALTIME_TICKS_PREFIX))  # honours _spark_metadata
    archived = [r.event_id for r in parquet.select("event_id").collect()]
    assert len(archived) == len(set(archived)) and set(archived) & ours == well_formed

    quarantine = spark.read.parquet(Bucket.REALTIME.s3a(REALTIME_QUARANTINE_PREFIX)).toPandas()
    malformed = sum(1 for e in first if not valid(e))
    late_rows = quarantine[quarantine["reason"].str.startswith("later than the watermark")]
    assert len(quarantine) - len(late_rows) == malformed
    assert {json.loads(v)["event_id"] for v in late_rows["value"]} == rejected_late

    for table, minutes in (("bars_1m", 1), ("bars_5m", 5)):
        stored = spark.table(f"{catalog}.realtime.{table}").toPandas().sort_values(["symbol", "window_start"])
        recomputed = bars_from_ticks(ticks, minutes).toPandas().sort_values(["symbol", "window_start"])
        assert len(stored) == len(recomputed) > 0
        exact = ["symbol", "window_start", "window_end", "open", "high", "low", "close", "volume", "trades"]
        assert stored[exact].values.tolist() == recomputed[exact].values.tolist(), table
        # vwap is a sum of products: the summation order may differ in the last bits
        assert np.allclose(stored["vwap"].to_numpy(), recomputed["vwap"].to_numpy(), rtol=1e-12, atol=0)


def test_kafka_source_mode_lands_events_in_iceberg(stack, settings, spark):
    if not kafka_source_available(settings):
        pytest.skip("Spark's Kafka connector (spark-sql-kafka-0-10) is not provisioned: no reachable "
                    "Maven repository on this machine; the landing mode is tested instead")
    events = produce(settings, 200, seed=31)
    env = {**os.environ, "TICKERLAKE_STREAM_SOURCE": "kafka"}
    done = subprocess.run([sys.executable, "-m", "spark_jobs.stream_ticks", "--available-now"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "with the kafka source" in done.stdout
    ids = {r.event_id for r in spark.table(f"{settings.iceberg.catalog}.realtime.ticks").select("event_id").collect()}
    assert {e["event_id"] for e in events} <= ids
