"""Iceberg upkeep: compact small files, rewrite manifests, expire snapshots, remove orphan files.

    python -m spark_jobs.maintain_tables [--tables realtime.ticks,realtime.bars_1m] [--no-orphans]

For each table, with Iceberg's Spark procedures (the expiry: its core Java API, see
`expire_snapshots`), while the stream may be writing:

1. `rewrite_manifests`: one manifest per partition range instead of one per commit.
2. expire snapshots (`ExpireSnapshots`, Iceberg's core API) older than
   TICKERLAKE_ICEBERG_SNAPSHOT_RETENTION_HOURS, but never the newest snapshot the stream job
   marked (its replay check and event-time watermark read it) nor the `realtime.ticks` snapshot
   the bars query's checkpoint points at (its restart reads from it).
3. `rewrite_data_files` (bin-pack to the table's target file size, `TARGET_FILE_BYTES`), with
   partial progress: a file group that conflicts with a concurrent commit fails alone and the
   rest commit; the whole call is retried on a commit conflict. It runs last, on a table with
   few manifests and snapshots, so each commit attempt is small; each table's commits retry up
   to 20 times, 50 to 500 ms apart (`COMMIT_RETRY_PROPERTIES`): the stream commits about once a
   second, and a compaction must land between two of its commits. A rewrite is a `replace`
   snapshot: the stream's Iceberg reader skips it, and the stream's replay check passes over
   it. The small files it replaced stay referenced by the snapshots before it, and go with the
   next run's expiry.
4. `remove_orphan_files` older than TICKERLAKE_ICEBERG_ORPHAN_MIN_AGE_HOURS (at least one hour:
   files of a write in flight look orphaned until it commits).

Data file count and bytes per table before and after go to the log and to one JSON line
(`MAINTENANCE_SUMMARY {...}`), and to the Pushgateway.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta

from tickerlake.core.errors import ConfigError, one_line_errors
from tickerlake.core.names import Namespace, Table
from tickerlake.core.settings import Settings, checkpoint_root, get_settings

log = logging.getLogger("maintain_tables")

MB = 1024 * 1024
# Per table: the streaming tables get many tiny commits and are read by time range; the
# processed tables are read whole per symbol and date range.
TARGET_FILE_BYTES: dict[Table, int] = {
    Table.TICKS: 64 * MB,
    Table.QUARANTINE_TICKS: 16 * MB,
    Table.LIVE_BARS_1M: 16 * MB,
    Table.LIVE_BARS_5M: 16 * MB,
    Table.BARS_1D: 128 * MB,
    Table.BARS_1M: 128 * MB,
    Table.ANOMALIES: 16 * MB,
}
MARKER = "tickerlake.batch"  # spark_jobs.stream_ticks.MARKER (kept equal by a test)
COMMIT_ATTEMPTS = 4


def file_stats(spark, name: str) -> dict[str, int]:
    """Data files and bytes of the table's current snapshot (its `files` metadata table)."""
    row = spark.sql(f"SELECT count(*) AS files, coalesce(sum(file_size_in_bytes), 0) AS bytes "
                    f"FROM {name}.files WHERE content = 0").first()
    snapshots = spark.sql(f"SELECT count(*) AS n FROM {name}.snapshots").first()
    return {"data_files": int(row["files"]), "bytes": int(row["bytes"]), "snapshots": int(snapshots["n"])}


def bars_checkpoint_snapshot(spark, settings: Settings) -> int | None:
    """The `realtime.ticks` snapshot the bars query's latest checkpointed offset points at."""
    from pyspark.sql import functions as F

    path = f"{checkpoint_root(settings)}/bars/offsets"
    try:
        lines = (spark.read.text(path).withColumn("file", F.input_file_name())
                 .where(F.col("value").contains("snapshot_id")).collect())
    except Exception as exc:  # noqa: BLE001 - no checkpoint yet, or not readable from this host
        log.info("bars checkpoint %s not readable here (%s): protecting by retention only",
                 path, str(exc).splitlines()[0][:160])
        return None
    newest = max(lines, key=lambda r: int(r["file"].rstrip("/").rsplit("/", 1)[1]), default=None)
    return int(json.loads(newest["value"])["snapshot_id"]) if newest else None


def expire_cutoff(spark, settings: Settings, table: Table, name: str) -> datetime:
    """Expire snapshots older than the retention, but keep the ones the stream still needs."""
    cutoff = datetime.now(UTC) - timedelta(hours=settings.iceberg.snapshot_retention_hours)
    needed = [r["committed_at"] for r in spark.sql(
        f"SELECT committed_at FROM {name}.snapshots WHERE summary['{MARKER}'] IS NOT NULL "
        f"ORDER BY committed_at DESC LIMIT 1").collect()]
    if table is Table.TICKS and (snapshot := bars_checkpoint_snapshot(spark, settings)) is not None:
        needed += [r["committed_at"] for r in spark.sql(
            f"SELECT committed_at FROM {name}.snapshots WHERE snapshot_id = {snapshot}").collect()]
    for committed_at in needed:
        committed_at = committed_at.replace(tzinfo=UTC) if committed_at.tzinfo is None else committed_at
        cutoff = min(cutoff, committed_at)  # expire_snapshots removes only the strictly older ones
    return cutoff


def _call(spark, sql: str) -> list:
    """A procedure call, retried when a concurrent commit (the stream's) wins the race."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return spark.sql(sql).collect()
        except Exception as exc:  # noqa: BLE001 - py4j wraps Iceberg's CommitFailedException
            if "CommitFailedException" not in str(exc) and "ValidationException" not in str(exc) \
                    or attempt == COMMIT_ATTEMPTS:
                raise
            log.warning("commit conflict (attempt %d of %d), retrying: %s", attempt, COMMIT_ATTEMPTS,
                        str(exc).splitlines()[0][:200])
            time.sleep(attempt)
    raise AssertionError("unreachable")


COMMIT_RETRY_PROPERTIES = ("'commit.retry.num-retries'='20', 'commit.retry.min-wait-ms'='50', "
                           "'commit.retry.max-wait-ms'='500'")

# Expiry and orphan removal delete one object per request: in parallel, not one after another.
CONCURRENT_DELETES = 8


class _CountingDelete:
    """`java.util.function.Consumer<String>` for ExpireSnapshots.deleteWith: deletes through the
    table's FileIO, as the default would, and counts data files and metadata files apart."""

    def __init__(self, io) -> None:
        import threading

        self.io, self.data, self.metadata, self.manifest_lists = io, 0, 0, 0
        self._lock = threading.Lock()

    def accept(self, path: str) -> None:
        self.io.deleteFile(path)
        with self._lock:  # called from the executor's threads
            if path.endswith(".parquet"):
                self.data += 1
            else:
                self.metadata += 1
                # one manifest list per expired snapshot (Iceberg names them snap-<id>-...avro)
                self.manifest_lists += path.rsplit("/", 1)[-1].startswith("snap-")

    class Java:
        implements = ["java.util.function.Consumer"]


def expire_snapshots(spark, name: str, cutoff: datetime) -> dict[str, int]:
    """Iceberg's core `ExpireSnapshots` (the Java API), not the `expire_snapshots` procedure.

    Why: the procedure (a Spark action) lists every file reachable from every snapshot before
    and after the expiry as Spark jobs and deletes the difference; on a streaming table of
    hundreds of one-manifest commits that planning is most of its time (benchmarks/maintenance.py
    measures both on the same table). The core API reads the manifest lists and manifests on the
    driver with a thread pool and deletes in parallel. Both commit the same metadata change,
    retried by Iceberg on a concurrent commit, and keep `retain_last` = 1."""
    from pyspark.java_gateway import ensure_callback_server_started

    jvm = spark._jvm
    ensure_callback_server_started(spark.sparkContext._gateway)  # deleteWith calls back into Python
    table = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, name)
    pool = jvm.java.util.concurrent.Executors.newFixedThreadPool(CONCURRENT_DELETES)
    deleted = _CountingDelete(table.io())
    older_than = int(cutoff.timestamp() * 1000)
    try:
        expired = (table.expireSnapshots().expireOlderThan(older_than).retainLast(1)
                   .deleteWith(deleted).executeDeleteWith(pool).planWith(pool))
        # Naming one snapshot that expires anyway (the oldest) makes Iceberg clean up by
        # reachability, as the procedure does, instead of incrementally: the incremental cleanup
        # keeps the files a retained snapshot removed (the compaction's, just committed) until that
        # snapshot expires too, a run later.
        oldest = min(table.snapshots(), key=lambda snapshot: snapshot.timestampMillis(), default=None)
        current = table.currentSnapshot()
        if oldest is not None and oldest.timestampMillis() < older_than and current is not None \
                and oldest.snapshotId() != current.snapshotId():
            expired = expired.expireSnapshotId(oldest.snapshotId())
        expired.commit()
    finally:
        pool.shutdown()
    return {"snapshots": deleted.manifest_lists, "data_files": deleted.data, "metadata_files": deleted.metadata}


def _spark_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def maintain(spark, settings: Settings, table: Table, *, orphans: bool = True) -> dict:
    """The four steps on one table; returns its before/after figures."""
    catalog = settings.iceberg.catalog
    name = f"{catalog}.{table.value}"
    began = time.perf_counter()
    before = file_stats(spark, name)
    steps: dict[str, float] = {}
    lap = [time.perf_counter()]

    def timed(step: str) -> None:
        now = time.perf_counter()
        steps[step], lap[0] = round(now - lap[0], 2), now

    # The stream commits about once a second. A commit rewrites a manifest list as long as the
    # table's manifests and a metadata file as long as its snapshots: the compaction commits
    # last, after the manifests are rewritten and the old snapshots expired, so that each of its
    # attempts is small enough to land between two of the stream's, and it retries often and
    # quickly (Iceberg's default, 4 retries from 100 ms, lost every race in
    # tests/test_table_maintenance.py once the stream's commits took 0.3 s).
    _call(spark, f"ALTER TABLE {name} SET TBLPROPERTIES ({COMMIT_RETRY_PROPERTIES})")
    manifests = _call(spark, f"CALL {catalog}.system.rewrite_manifests(table => '{table.value}')")
    timed("rewrite_manifests")
    cutoff = expire_cutoff(spark, settings, table, name)
    expired = expire_snapshots(spark, name, cutoff)
    timed("expire_snapshots")
    # the session's time zone is UTC (core.spark): TIMESTAMP literals below are UTC
    rewrite = _call(spark, f"CALL {catalog}.system.rewrite_data_files(table => '{table.value}', "
                           f"options => map('target-file-size-bytes', '{TARGET_FILE_BYTES[table]}', "
                           f"'partial-progress.enabled', 'true', 'partial-progress.max-commits', '10'))")
    timed("rewrite_data_files")
    removed = 0
    if orphans:
        age = datetime.now(UTC) - timedelta(hours=settings.iceberg.orphan_min_age_hours)
        removed = len(_call(spark, f"CALL {catalog}.system.remove_orphan_files(table => '{table.value}', "
                                   f"older_than => TIMESTAMP '{_spark_time(age)}', "
                                   f"max_concurrent_deletes => {CONCURRENT_DELETES})"))
        timed("remove_orphan_files")
    after = file_stats(spark, name)
    figures = {
        "table": table.value, "before": before, "after": after,
        "rewritten_files": int(rewrite[0]["rewritten_data_files_count"]) if rewrite else 0,
        "added_files": int(rewrite[0]["added_data_files_count"]) if rewrite else 0,
        "rewritten_manifests": int(manifests[0]["rewritten_manifests_count"]) if manifests else 0,
        "expired_snapshots": expired["snapshots"],
        "expired_data_files": expired["data_files"],
        "orphan_files_removed": removed,
        "expired_before": cutoff.isoformat(),
        "seconds": round(time.perf_counter() - began, 2), "step_seconds": steps,
    }
    log.info("%s: data files %d -> %d, bytes %d -> %d, snapshots %d -> %d (%.1f s)", table.value,
             before["data_files"], after["data_files"], before["bytes"], after["bytes"],
             before["snapshots"], after["snapshots"], figures["seconds"])
    return figures


def parse_tables(value: str | None, namespace: str | None) -> list[Table]:
    if value:
        tables = []
        for item in value.split(","):
            try:
                tables.append(Table(item.strip()))
            except ValueError:
                raise ConfigError(f"--tables: unknown table {item.strip()!r}; "
                                  f"known: {', '.join(t.value for t in Table)}") from None
        return tables
    return [t for t in Table if namespace is None or t.namespace == Namespace(namespace)]


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.metrics import push_run
    from tickerlake.core.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="maintain_tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", help="comma-separated namespace.table (default: every table)")
    parser.add_argument("--namespace", choices=[n.value for n in Namespace],
                        help="only the tables of this namespace")
    parser.add_argument("--no-orphans", action="store_true", help="skip remove_orphan_files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # a line per deleteWith callback otherwise
    settings = get_settings()
    tables = parse_tables(args.tables, args.namespace)
    existing = iceberg_catalog(settings)
    present = [t for t in tables if existing.table_exists(t.value)]
    for missing in sorted(set(tables) - set(present)):
        log.info("%s: not created yet, nothing to maintain", missing.value)
    spark = build_spark_session("tickerlake-maintain-tables", settings)
    summary = []
    try:
        for table in present:
            figures = maintain(spark, settings, table, orphans=not args.no_orphans)
            summary.append(figures)
            # rows: the data files the compaction rewrote
            push_run("lake_maintenance", {"table": table.value}, rows=figures["rewritten_files"],
                     seconds=figures["seconds"])
    finally:
        spark.stop()
    print("MAINTENANCE_SUMMARY " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
