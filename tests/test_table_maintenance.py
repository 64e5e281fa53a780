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
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo

from spark_jobs.maintain_tables import MARKER, TARGET_FILE_BYTES, parse_tables
from spark_jobs.stream_ticks import MARKER as STREAM_MARKER
from tests.test_streaming import produce, stream, ticks_batches, valid
from tickerlake.core.datasets import TICKS
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


def _append(table, rows: pa.Table):
    """One commit; the stream commits into the same table meanwhile: on a conflict, refresh and
    append again (what any second writer of an Iceberg table does)."""
    from pyiceberg.exceptions import CommitFailedException

    for attempt in range(20):
        try:
            table.append(rows)
            return
        except CommitFailedException:
            table.refresh()
            time.sleep(0.05 * attempt)
    raise AssertionError("20 commit conflicts in a row")


def _small_commits(table, count: int) -> set[str]:
    """`count` appends of 20 ticks each into one (date, hour) partition: one file per commit, as a
    micro-batch leaves them."""
    ids: set[str] = set()
    base = datetime(DAY.year, DAY.month, DAY.day, 15, tzinfo=UTC)
    for commit in range(count):
        rows = []
        for i in range(20):
            event_id = str(uuid.uuid4())
            ids.add(event_id)
            rows.append({"event_id": event_id, "event_time": base + timedelta(seconds=commit * 7 + i * 0.3),
                         "symbol": "MAINT", "price": 100 + i / 10, "size": 10 + i, "bid": None, "ask": None,
                         "source": "test", "date": DAY, "kafka_partition": None, "kafka_offset": None,
                         "hour": 15})
        _append(table, pa.Table.from_pylist(rows, schema=TICKS.arrow_schema()))
    return ids


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


def test_maintenance_compacts_500_commits_while_the_stream_writes():
    """On a stack of its own: a fresh `realtime.ticks`, as a day's first commits find it (the
    session's table holds every other test's snapshots, which only make each commit slower)."""
    from tickerlake.core.clients import s3_client
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.settings import get_settings
    from tickerlake.dev.private import private_stack

    with private_stack({"TICKERLAKE_SPARK_DRIVER_MEMORY": "1g"}):
        settings = get_settings()
        s3, catalog = s3_client(settings.s3), iceberg_catalog(settings)
        # The 500 commits first (the stream's job creates the table), then the stream runs and a
        # producer feeds it while the maintenance runs: all three commit into the same table.
        subprocess.run([sys.executable, "-c", "from spark_jobs.stream_ticks import ensure_tables;"
                        "from tickerlake.core.spark import build_spark_session;"
                        "from tickerlake.core.settings import get_settings as g;"
                        "ensure_tables(build_spark_session('create-tables', g()), g())"],
                       cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
        ticks = catalog.load_table(str(Table.TICKS))
        ours = _small_commits(ticks, COMMITS)
        ticks = ticks.refresh()
        assert _partition_files(ticks) == COMMITS
        day_filter = EqualTo("date", DAY.isoformat())  # type: ignore[call-arg,arg-type]
        before = ticks.scan(row_filter=day_filter).to_arrow().sort_by("event_id")

        sent: list[dict] = []
        feeding = threading.Event()
        feeding.set()

        def feed() -> None:
            seed = 100
            while feeding.is_set():
                sent.extend(produce(settings, seed=seed, count=40))
                seed += 1
                time.sleep(0.5)

        job = stream(max_offsets=200)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            assert _wait(lambda: ticks_batches(s3) >= 1, 180, job), job.stdout.read()[-3000:]
            marked_before = marked(ticks.refresh())
            env = {**os.environ, "TICKERLAKE_ICEBERG_SNAPSHOT_RETENTION_HOURS": "0"}  # expire all it may
            maintenance = subprocess.run([sys.executable, "-m", "spark_jobs.maintain_tables", "--tables",
                                          "realtime.ticks", "--no-orphans"], cwd=REPO_ROOT, env=env,
                                         capture_output=True, text=True, timeout=900)
            after_maintenance = ticks_batches(s3)
            _wait(lambda: ticks_batches(s3) >= after_maintenance + 3, 300, job)  # commits after the compaction's
        finally:
            feeding.clear()
            feeder.join()
        # take in everything sent, then a clean stop
        _wait(lambda: not sum(kafka_lag(settings, kafka_source_positions(read_progress(s3))).values()), 180, job)
        job.send_signal(signal.SIGTERM)
        out, _ = job.communicate(timeout=180)
        assert maintenance.returncode == 0, (maintenance.stdout + maintenance.stderr)[-3000:]
        assert job.returncode == 0, out[-3000:]

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
