"""The stream supervisor: one copy only (advisory lock), stall detection, a supervised run under
`airflow dags test` that fills the realtime tables, and a clean stop that leaves no process."""
from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime

import pytest

from tickerlake.core.lease import current_lease
from tickerlake.core.stream_progress import STREAM_JOB
from tickerlake.streaming.supervisor import (
    LOCK_KEY,
    PRODUCER,
    STREAM,
    SupervisorBusy,
    is_stalled,
    running,
    stall_verdict,
    stop_all,
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


def test_a_slow_batch_that_progresses_is_not_a_stall(settings):
    state = settings.stack.state_dir / "stream" / "last_progress.json"
    state.unlink(missing_ok=True)
    working = {"written_at": time.time(), "queries": {"ticks": {"batchId": 9}}, "activity": 100}
    assert stall_verdict(settings, working, waiting=500, stall_seconds=60)[0] is False
    # the same batch for two minutes while records wait, but tasks kept completing
    state.write_text(json.dumps({"batch": 9, "since": time.time() - 120,
                                 "activity": 100, "activity_since": time.time() - 120}))
    stalled, evidence = stall_verdict(settings, {**working, "activity": 140}, waiting=500, stall_seconds=60)
    assert not stalled and evidence.startswith("slow but progressing: batch 9 for 120s")
    # the activity stopped moving too: stuck
    state.write_text(json.dumps({"batch": 9, "since": time.time() - 120,
                                 "activity": 140, "activity_since": time.time() - 90}))
    stalled, evidence = stall_verdict(settings, {**working, "activity": 140}, waiting=500, stall_seconds=60)
    assert stalled and "activity 140 unchanged for 90s, 500 records waiting" in evidence


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


def _wait_for_holder(settings, pid: int, timeout: float = 180):
    from tickerlake.streaming.supervisor import _log_path

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = current_lease(settings, STREAM_JOB)
        if state is not None and state.live and state.holder.split(":")[1] == str(pid):
            return state
        time.sleep(0.5)
    log = _log_path(settings, STREAM)
    raise AssertionError(f"pid {pid} never took the lease: {current_lease(settings, STREAM_JOB)}\n"
                         + (log.read_text()[-3000:] if log.exists() else "(no log)"))


def test_a_second_supervisor_starts_no_job_while_the_lease_is_held_and_takes_over_after_expiry(
        stack, settings, tmp_path):
    """Two supervisors with their own state directories (two hosts' PID files), one lease."""
    other_host = settings.model_copy(update={"stack": settings.stack.model_copy(update={"state_dir": tmp_path})})
    try:
        supervise(settings=settings)
        first_pid = running(settings, STREAM)
        held = _wait_for_holder(settings, first_pid)

        report = supervise(settings=other_host)
        assert report[STREAM.name].startswith(f"held elsewhere by {held.holder}"), report
        assert running(other_host, STREAM) is None

        os.killpg(first_pid, signal.SIGKILL)  # the holder's driver and JVM, mid-run
        deadline = time.monotonic() + 30
        while running(settings, STREAM) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        last_renewal = current_lease(settings, STREAM_JOB).renewed_at

        report = supervise(settings=other_host)
        assert report[STREAM.name].startswith("started"), report
        taken = _wait_for_holder(settings, running(other_host, STREAM))
        assert taken.token == held.token + 1
        # not before the dead holder's lease expired (the database's clock on both sides)
        assert (taken.acquired_at - last_renewal).total_seconds() >= settings.stream.lease_seconds
        # and the first host, whose job is gone, now sees the second host's
        assert supervise(settings=settings)[STREAM.name].startswith(f"held elsewhere by {taken.holder}")
    finally:
        stop_all(other_host)
        stop_all(settings)
