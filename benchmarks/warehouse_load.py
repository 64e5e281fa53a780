"""Benchmark: the warehouse load's bulk path against a plain `executemany` baseline, on Postgres.

    .venv/bin/python -m benchmarks.warehouse_load --rows 1000000
    .venv/bin/python -m benchmarks.warehouse_load --rows 10000000

It starts a private stack (nothing shared with `make up`), writes `--rows` processed daily bars
(every column of `warehouse.bars_daily`: OHLCV + 20 indicators) as Parquet into the lake, one
object per date partition of `--per-partition` symbols, then in this one process:

- bulk: `load_dataset` for the whole lake: per partition, S3 read, binary COPY from Arrow (ADBC)
  into a staging table, upsert into the target, ledger, one transaction per partition;
- baseline: the same objects read the same way, then psycopg `executemany` of
  `INSERT ... ON CONFLICT DO UPDATE` row by row, on the first `--baseline-rows` rows (a smaller
  sample: row-by-row is what the bulk path exists to avoid), into a copy of the table.

Prints rows, wall seconds and rows/s for each and the ratio (bulk rows/s ÷ baseline rows/s).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warehouse_load")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-partition", type=int, default=5_000, help="symbols (rows) per date")
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    return parser.parse_args()


def bars(dataset, day: date, symbols: int, rng: np.random.Generator) -> pa.Table:
    from tickerlake.warehouse.datasets import ARROW, Kind

    ts = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
    columns = {}
    for column in dataset.columns:
        if column.lake == "symbol":
            values = pa.array([f"S{i:05d}" for i in range(symbols)])
        elif column.lake == "timestamp":
            values = pa.array([ts] * symbols, ARROW[column.kind])
        elif column.kind is Kind.DOUBLE:
            values = pa.array(rng.random(symbols) * 100)
        elif column.kind is Kind.BIGINT:
            values = pa.array(rng.integers(0, 10_000_000, symbols))
        elif column.kind is Kind.BOOL:
            values = pa.array(rng.random(symbols) < 0.01)
        else:
            values = pa.array(["synthetic"] * symbols)
        columns[column.lake] = values
    return pa.table(columns)


def baseline(settings, dataset, s3, objects, limit: int) -> int:
    """Row-by-row upserts with psycopg executemany into a copy of the target table."""
    from tickerlake.core.clients import pg_connect
    from tickerlake.warehouse.datasets import read_object

    target = dataset.target_columns()
    names = ", ".join(target)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in target if c not in dataset.keys)
    sql = (f"INSERT INTO warehouse.bench_baseline ({names}) VALUES ({', '.join(['%s'] * len(target))}) "
           f"ON CONFLICT ({', '.join(dataset.keys)}) DO UPDATE SET {updates}")
    done = 0
    with pg_connect(settings.pg) as conn:
        conn.execute("DROP TABLE IF EXISTS warehouse.bench_baseline")
        conn.execute("CREATE TABLE warehouse.bench_baseline (LIKE warehouse.bars_daily INCLUDING ALL)")
        conn.commit()
        for partition, objs in objects:
            if done >= limit:
                break
            day = partition.split("=", 1)[1]
            for obj in objs:
                rows = read_object(s3, obj, dataset).to_pylist()[: limit - done]
                with conn.cursor() as cur:
                    cur.executemany(sql, [tuple(r.values()) + (day,) for r in rows])
                conn.commit()
                done += len(rows)
    return done


def main() -> int:
    args = parse_args()
    from tickerlake.dev.private import private_stack

    with private_stack():
        from tickerlake.core.clients import s3_client
        from tickerlake.core.settings import get_settings
        from tickerlake.warehouse.base import check_dataset, load_dataset, raise_on_mismatch
        from tickerlake.warehouse.datasets import Datasets, list_partitions
        from tickerlake.warehouse.postgres import PostgresWarehouse

        settings = get_settings()
        s3 = s3_client(settings.s3)
        # the load's mechanics on plain Parquet objects under a prefix of the benchmark's own (the
        # real dataset reads the Iceberg table's snapshot; its listing is not what is measured)
        dataset = dataclasses.replace(Datasets.BARS_DAILY.value, iceberg=None, prefix="bench-warehouse/bars_1d/")
        rng = np.random.default_rng(7)
        partitions = -(-args.rows // args.per_partition)
        t0 = time.perf_counter()
        for i in range(partitions):
            day = date(2000, 1, 3) + timedelta(days=i)
            n = min(args.per_partition, args.rows - i * args.per_partition)
            sink = io.BytesIO()
            pq.write_table(bars(dataset, day, n, rng), sink)
            s3.put_object(Bucket=dataset.bucket.value, Key=f"{dataset.prefix}date={day}/part-00000.parquet",
                          Body=sink.getvalue())
        print(f"prepared {args.rows:,} processed daily bars in {partitions:,} partitions "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)

        with PostgresWarehouse(settings.pg) as wh:
            t0 = time.perf_counter()
            report = load_dataset(wh, dataset, s3)
            bulk_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            rerun = load_dataset(wh, dataset, s3)
            rerun_seconds = time.perf_counter() - t0
            raise_on_mismatch(check_dataset(wh, dataset, s3))

        objects = list(list_partitions(s3, dataset).items())
        t0 = time.perf_counter()
        base_rows = baseline(settings, dataset, s3, objects, args.baseline_rows)
        base_seconds = time.perf_counter() - t0

    bulk_rate, base_rate = report.rows_loaded / bulk_seconds, base_rows / base_seconds
    print(f"\n{'run':<34}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    label = "bulk (ADBC COPY, upsert when changed)"
    print(f"{label:<34}{report.rows_loaded:>12,}{bulk_seconds:>10.1f}{bulk_rate:>12,.0f}")
    print(f"{'baseline (psycopg executemany)':<34}{base_rows:>12,}{base_seconds:>10.1f}{base_rate:>12,.0f}")
    print(f"ratio (bulk rows/s / baseline rows/s): {bulk_rate / base_rate:.1f}")
    print(f"rerun with nothing changed: {rerun.rows_loaded} rows loaded, {rerun.partitions_unchanged:,} "
          f"partitions skipped in {rerun_seconds:.1f}s; consistency check passed")
    print(f"machine: {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
