"""Benchmark: snapshot expiry on a streaming table, Iceberg's core API against the procedure.

    .venv/bin/python -m benchmarks.maintenance [--commits 500]

It starts a private stack (nothing shared with `make up`) and, twice, writes `--commits` small
commits into a partition of `realtime.ticks` of its own (`tests/spark_small_commits.py`: one data
file, one manifest and one snapshot each, as that many micro-batches leave them), compacts them
and rewrites the manifests as `lake_maintenance` does, and then expires every snapshot but the
newest, timed:

- core: `spark_jobs.maintain_tables.expire_snapshots`, Iceberg's Java `ExpireSnapshots` (what
  `lake_maintenance` runs);
- baseline: the `expire_snapshots` Spark procedure with the same cutoff, `retain_last => 1` and
  the same number of concurrent deletes.

The core variant runs first, so the baseline gets the warmer JVM. Prints snapshots and files
expired and seconds for each, and the ratio (baseline seconds / core seconds).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime


def seed(commits: int, day: str) -> None:
    from tickerlake.core.settings import REPO_ROOT

    done = subprocess.run([sys.executable, "-m", "tests.spark_small_commits", str(commits), day, "15"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"seeding {commits} commits failed: {(done.stdout + done.stderr)[-2000:]}")


def compact(spark, name: str, table: str, catalog: str) -> None:
    from spark_jobs.maintain_tables import TARGET_FILE_BYTES
    from tickerlake.core.names import Table

    spark.sql(f"CALL {catalog}.system.rewrite_data_files(table => '{table}', options => "
              f"map('target-file-size-bytes', '{TARGET_FILE_BYTES[Table(table)]}'))").collect()
    spark.sql(f"CALL {catalog}.system.rewrite_manifests(table => '{table}')").collect()
    spark.sql(f"REFRESH TABLE {name}")


def snapshots(spark, name: str) -> int:
    return spark.sql(f"SELECT count(*) AS n FROM {name}.snapshots").first()["n"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.maintenance")
    parser.add_argument("--commits", type=int, default=500)
    args = parser.parse_args()

    from spark_jobs.maintain_tables import CONCURRENT_DELETES, _spark_time, expire_snapshots
    from tickerlake.core.names import Table
    from tickerlake.core.settings import get_settings
    from tickerlake.core.spark import build_spark_session
    from tickerlake.dev.private import private_stack

    with private_stack():
        settings = get_settings()
        catalog, table = settings.iceberg.catalog, str(Table.TICKS)
        name = f"{catalog}.{table}"
        seed(args.commits, "2020-01-02")
        spark = build_spark_session("benchmark-maintenance", settings)
        try:
            compact(spark, name, table, catalog)
            before = snapshots(spark, name)
            began = time.perf_counter()
            core = expire_snapshots(spark, name, datetime.now(UTC))
            core_seconds = time.perf_counter() - began
            print(f"core API:  {before} snapshots -> {snapshots(spark, name)}: expired {core['snapshots']} "
                  f"snapshots, {core['data_files']} data files, {core['metadata_files']} metadata files "
                  f"in {core_seconds:.1f} s", flush=True)

            seed(args.commits, "2020-01-03")
            spark.sql(f"REFRESH TABLE {name}")
            compact(spark, name, table, catalog)
            before = snapshots(spark, name)
            began = time.perf_counter()
            [row] = spark.sql(f"CALL {catalog}.system.expire_snapshots(table => '{table}', "
                              f"older_than => TIMESTAMP '{_spark_time(datetime.now(UTC))}', retain_last => 1, "
                              f"max_concurrent_deletes => {CONCURRENT_DELETES})").collect()
            baseline_seconds = time.perf_counter() - began
            print(f"procedure: {before} snapshots -> {snapshots(spark, name)}: expired "
                  f"{row['deleted_manifest_lists_count']} snapshots, {row['deleted_data_files_count']} data files, "
                  f"{row['deleted_manifests_count'] + row['deleted_manifest_lists_count']} metadata files "
                  f"in {baseline_seconds:.1f} s", flush=True)
            print(f"ratio (procedure / core): {baseline_seconds / core_seconds:.1f}x", flush=True)
        finally:
            spark.stop()


if __name__ == "__main__":
    main()
