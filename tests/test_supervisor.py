"""The stream supervisor: one copy only (advisory lock), stall detection, a supervised run under
`airflow dags test` that fills the realtime tables, and a clean stop that leaves no process."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from tickerlake.streaming.supervisor import (
    LOCK_KEY,
    PRODUCER,
    STREAM,
    SupervisorBusy,
    is_stalled,
    running,
    supervise,
)

pytestmark = pytest.mark.spark


def test_a_second_supervisor_cannot_start_anything_while_one_holds_the_lock(stack, settings):
    from tickerlake.core.clients import pg_connect

    with pg_connect(settings.pg, autocommit=True) as holder:
        assert holder.execute("select pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        with pytest.raises(SupervisorBusy, match="another supervisor holds the stream lock"):
            supervise(settings=settings)
    assert all(running(settings, p) is None for p in (PRODUCER, STREAM))


def test_stall_is_no_new_batch_while_records_wait(settings, tmp_path):
    fresh = {"written_at": time.time(), "queries": {"ticks": {"batchId": 7}}}
    assert not is_stalled(settings, fresh, waiting=10, stall_seconds=60)  # first sight: not stalled
    state = settings.stack.state_dir / "stream" / "last_progress.json"
    state.write_text(json.dumps({"batch": 7, "since": time.time() - 120}))
    assert is_stalled(settings, fresh, waiting=10, stall_seconds=60)  # same batch for 120 s, input waits
    state.write_text(json.dumps({"batch": 7, "since": time.time() - 120}))
    assert not is_stalled(settings, fresh, waiting=0, stall_seconds=60)  # idle, nothing waiting: fine
    silent = {**fresh, "written_at": time.time() - 300}
    assert is_stalled(settings, silent, waiting=0, stall_seconds=60)  # the driver stopped reporting


def test_supervised_stream_fills_the_realtime_tables_and_stops_cleanly(stack, settings):
    from minio_init.warehouse import ensure_databases
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.dev.airflow_local import run_airflow

    ensure_databases(settings.pg)
    done = run_airflow(["dags", "test", "stream_supervisor", "2026-01-02", "--conf",
                        json.dumps({"demo_producer": True})], settings, capture=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    pids = [running(settings, p) for p in (PRODUCER, STREAM)]
    assert all(pids), pids
    try:
        catalog = iceberg_catalog(settings)
        deadline, rows = time.monotonic() + 240, 0
        while time.monotonic() < deadline and rows == 0:
            time.sleep(3)
            if catalog.table_exists("realtime.ticks"):
                rows = catalog.load_table("realtime.ticks").scan().to_arrow().num_rows
        assert rows > 0, "no tick reached realtime.ticks"
        # A second round finds everything running and starts no second copy.
        again = supervise(demo_producer=True, settings=settings)
        assert again["stream_ticks"] == f"running (pid {pids[1]})"
        assert again["source"] == "kafka" and set(again["kafka_lag"]) == {0, 1, 2}
    finally:
        stopped = run_airflow(["dags", "test", "stream_supervisor", "2026-01-02", "--conf",
                               json.dumps({"action": "stop"})], settings, capture=True)
    assert stopped.returncode == 0
    assert all(running(settings, p) is None for p in (PRODUCER, STREAM))

    # Stream equals batch: the session's 1-minute bars recomputed from realtime.ticks are the
    # stream's (the clean stop let the bars take in every committed tick).
    today = datetime.now(UTC).date().isoformat()
    compared = run_airflow(["dags", "test", "stream_supervisor", "2026-01-02", "--conf",
                            json.dumps({"action": "compare", "compare_date": today})], settings, capture=True)
    output = compared.stdout + compared.stderr
    assert compared.returncode == 0, output[-3000:]
    summary, _ = json.JSONDecoder().raw_decode(output.split("COMPARE_BARS ", 1)[1])
    assert summary["differences"] == 0 and summary["compared"] > 0


def test_kafka_mode_lag_reads_the_offsets_spark_reports_in_its_progress():
    """The progress shape is StreamingQueryProgress.sources[].endOffset of Spark's Kafka source
    (both spellings Spark versions use: an object and a JSON string)."""
    from tickerlake.streaming.supervisor import kafka_source_positions

    source = {"description": "KafkaV2[Subscribe[tickerlake.ticks]]",
              "startOffset": {"tickerlake.ticks": {"0": 1, "1": 0}},
              "endOffset": {"tickerlake.ticks": {"0": 534, "1": 134}}}
    progress = {"queries": {"ticks": {"batchId": 7, "sources": [source]}}}
    assert kafka_source_positions(progress) == {0: 534, 1: 134}
    as_text = {"queries": {"ticks": {"sources": [{**source, "endOffset": json.dumps(source["endOffset"])}]}}}
    assert kafka_source_positions(as_text) == {0: 534, 1: 134}
    assert kafka_source_positions(None) == {}
