"""lake_maintenance on a table written by 500 small commits while the stream writes into it (on a
stack of its own):
the small files are compacted to what the target size implies, reads return the same rows, the
stream's events all land exactly once, and the snapshots the stream needs survive the expiry."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date

import pytest
from pyiceberg.expressions import EqualTo

from spark_jobs.maintain_tables import MARKER, TARGET_FILE_BYTES, parse_tables
from spark_jobs.stream_ticks import MARKER as STREAM_MARKER
from tests.spark_small_commits import event_id
from tests.test_streaming import produce, stream, ticks_batches, valid
from tickerlake.core.errors import ConfigError
from tickerlake.core.names import Table
from tickerlake.core.settings import REPO_ROOT
from tickerlake.core.stream_progress import kafka_lag, kafka_source_positions, read_progress

pytestmark = pytest.mark.spark

COMMITS = 500
DAY = date(2020, 1, 2)  # a partition of its own: the stream writes today's


def test_every_table_has_a_target_file_size_and_the_marker_is_the_streams():
    assert set(TARGET_FILE_BYTES) == set(Table)
    assert MARKER == STREAM_MARKER
    with pytest.raises(ConfigError, match="--tables: unknown table 'realtime.nope'"):
        parse_tables("realtime.ticks,realtime.nope", None)


def marked(table) -> list:
    return [s for s in table.snapshots() if MARKER in (s.summary.additional_properties or {})]


def _partition_files(table) -> int:
    files = table.inspect.files().to_pylist()
    return sum(1 for f in files if f["content"] == 0 and f["partition"]["date"] == DAY)


def _wait(condition, timeout: float, job) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_maintenance_compacts_500_commits_while_the_stream_writes(tmp_path):
    """On a stack of its own: a fresh `realtime.ticks`, as a day's first commits find it (the
    session's table holds every other test's snapshots, which only make each commit slower)."""
    from tickerlake.core.clients import s3_client
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.settings import get_settings
    from tickerlake.dev.private import private_stack

    began = time.monotonic()

    def phase(step: str) -> None:  # where the time went: pytest shows it with a failure (and with -s)
        print(f"PHASE {step} done at {time.monotonic() - began:.1f}s", flush=True)

    with private_stack({"TICKERLAKE_SPARK_DRIVER_MEMORY": "1g"}):
        phase("stack")
        settings = get_settings()
        s3, catalog = s3_client(settings.s3), iceberg_catalog(settings)
        # The 500 commits first (from Spark, which creates the stream's tables), then the stream
        # runs and a producer feeds it while the maintenance runs: both commit into the same table.
        seeded = subprocess.run([sys.executable, "-m", "tests.spark_small_commits", str(COMMITS), DAY.isoformat(),
                                 "15"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
        assert seeded.returncode == 0, (seeded.stdout + seeded.stderr)[-3000:]
        print(seeded.stdout.strip().splitlines()[-1])  # SMALL_COMMITS: where its time went
        phase("commits")
        ours = {event_id(commit, row) for commit in range(COMMITS) for row in range(20)}
        ticks = catalog.load_table(str(Table.TICKS))
        assert _partition_files(ticks) == COMMITS
        day_filter = EqualTo("date", DAY.isoformat())  # type: ignore[call-arg,arg-type]
        before = ticks.scan(row_filter=day_filter).to_arrow().sort_by("event_id")
        assert set(before["event_id"].to_pylist()) == ours

        sent: list[dict] = []
        feeding = threading.Event()
        feeding.set()

        def feed() -> None:
            seed = 100
            while feeding.is_set():
                # a trickle (about 10 events/s): the stream keeps committing while the maintenance
                # runs, without a backlog that two JVMs on two cores would take minutes to drain
                sent.extend(produce(settings, seed=seed, count=20))
                seed += 1
                time.sleep(2)

        log_path = tmp_path / "stream_ticks.log"
        log_file = log_path.open("w")
        job = stream(max_offsets=1000, output=log_file)

        def job_log() -> str:
            return log_path.read_text()[-3000:]

        try:
            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            try:
                assert _wait(lambda: ticks_batches(s3) >= 1, 180, job), job_log()
                phase("stream first batch")
                marked_before = marked(ticks.refresh())
                env = {**os.environ, "TICKERLAKE_ICEBERG_SNAPSHOT_RETENTION_HOURS": "0"}  # expire all it may
                maintenance = subprocess.run([sys.executable, "-m", "spark_jobs.maintain_tables", "--tables",
                                              "realtime.ticks", "--no-orphans"], cwd=REPO_ROOT, env=env,
                                             capture_output=True, text=True, timeout=900)
                phase("maintenance")
                after_maintenance = ticks_batches(s3)
                # commits after the compaction's
                assert _wait(lambda: ticks_batches(s3) >= after_maintenance + 3, 300, job), job_log()
            finally:
                feeding.clear()
                feeder.join()
            phase("three more batches")
            # take in everything sent, then a clean stop
            def waiting() -> int:
                return sum(kafka_lag(settings, kafka_source_positions(read_progress(s3))).values())

            assert _wait(lambda: not waiting(), 300, job), \
                f"the stream did not catch up: {waiting()} records waiting\n{job_log()}"
            job.send_signal(signal.SIGTERM)
            job.wait(timeout=180)
        finally:
            if job.poll() is None:  # a failed assertion above: end the job we started, by its PID
                os.killpg(job.pid, signal.SIGKILL)
            log_file.close()
        phase("drained and stopped")
        assert maintenance.returncode == 0, (maintenance.stdout + maintenance.stderr)[-3000:]
        assert job.returncode == 0, job_log()

        summary = json.loads(maintenance.stdout.split("MAINTENANCE_SUMMARY ", 1)[1].splitlines()[0])[0]
        print("MAINTENANCE_SUMMARY", json.dumps(summary))
        assert summary["rewritten_files"] >= COMMITS
        assert summary["after"]["data_files"] < summary["before"]["data_files"]
        assert summary["after"]["snapshots"] < summary["before"]["snapshots"]

        ticks = ticks.refresh()
        # 500 files of the partition became what the target size implies: its bytes fit in one file
        day_bytes = sum(f["file_size_in_bytes"] for f in ticks.inspect.files().to_pylist()
                        if f["content"] == 0 and f["partition"]["date"] == DAY)
        assert _partition_files(ticks) == -(-day_bytes // TARGET_FILE_BYTES[Table.TICKS]) == 1
        after = ticks.scan(row_filter=day_filter).to_arrow().sort_by("event_id")
        assert after.num_rows == before.num_rows == len(ours) and after.equals(before)

        # The stream kept writing: it committed after the compaction's commit, every event exactly once.
        replaced = [s for s in ticks.snapshots() if s.summary.operation.value == "replace"]
        assert replaced and any(s.timestamp_ms > replaced[-1].timestamp_ms for s in marked(ticks))
        ids = ticks.scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist()
        assert len(ids) == len(set(ids))
        assert {e["event_id"] for e in sent if valid(e)} <= set(ids)
        # The newest snapshot the stream marked before is still there (its replay check reads it).
        newest_before = max(s.timestamp_ms for s in marked_before)
        assert max(s.timestamp_ms for s in marked(ticks)) >= newest_before
