"""Benchmark: the warehouse load's bulk path against a plain `executemany` baseline, on Postgres.

    .venv/bin/python -m benchmarks.warehouse_load --rows 1000000
    .venv/bin/python -m benchmarks.warehouse_load --rows 10000000 --per-partition 10000

It starts a private stack (nothing shared with `make up`), writes `--rows` processed daily bars
(every column of `warehouse.bars_daily`: OHLCV + 20 indicators) into an Iceberg table of its own
(`processed.bench_bars_1d`, partitioned by date like `processed.bars_1d`, `--per-partition`
symbols a day, appended with pyiceberg), then in this one process:

- bulk: `load_dataset` for the whole table as the load DAG runs it: the snapshot's data files by
  partition; per partition S3 read, the lake-side key checksum (DuckDB), binary COPY from Arrow
  (pgpq + psycopg): each month new to the warehouse into a child created index-less, indexed
  and attached at the end; ledger; TICKERLAKE_WAREHOUSE_LOAD_WORKERS months side by side;
  seconds per step summed over the workers;
- the DAG's consistency check after that load (every partition is new to it);
- a rerun with nothing new: load plus check, as the DAG's next run does them;
- `--full-check`: the on-demand check that reads the lake again;
- ceiling: the first `--ceiling-rows` rows, already in memory as Arrow, COPYed by the load's
  own call (pgpq + psycopg) on as many connections into a copy of the table with its indexes,
  and into index-less tables each created in its COPY's transaction (as a new month is): what
  Postgres and the encoder alone take, with no S3 read, checksum, index build or ledger;
- baseline, run first: the same data files read the same way, then psycopg `executemany` of
  `INSERT ... ON CONFLICT DO UPDATE` row by row, on the first `--baseline-rows` rows (a smaller
  sample: row-by-row is what the bulk path exists to avoid), into a copy of the table with its
  indexes. Each timed run starts after a CHECKPOINT.

Prints rows, wall seconds and rows/s for each and the ratio (bulk rows/s ÷ baseline rows/s).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa

TABLE = "bench_bars_1d"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warehouse_load")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-partition", type=int, default=5_000, help="symbols (rows) per date")
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--full-check", action="store_true", help="also time the on-demand full check")
    parser.add_argument("--ceiling-rows", type=int, default=2_000_000)
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
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in target if c not in dataset.unique_keys)
    sql = (f"INSERT INTO warehouse.bench_baseline ({names}) VALUES ({', '.join(['%s'] * len(target))}) "
           f"ON CONFLICT ({', '.join(dataset.unique_keys)}) DO UPDATE SET {updates}")
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
        conn.execute("DROP TABLE warehouse.bench_baseline")
        conn.commit()
    return done


def iceberg_table(catalog, rows: int, per_partition: int, dataset) -> None:
    """The benchmark's Iceberg table, filled in appends of about a million rows."""
    from tickerlake.core import datasets as declared
    from tickerlake.core.names import Namespace

    schema = declared.BARS.arrow_schema()
    catalog.create_namespace_if_not_exists(Namespace.PROCESSED.value)
    table = catalog.create_table(f"{Namespace.PROCESSED.value}.{TABLE}", schema=schema,
                                 location=Namespace.PROCESSED.table_location(TABLE))
    with table.update_spec() as spec:
        spec.add_identity("date")
    rng = np.random.default_rng(7)
    partitions = -(-rows // per_partition)
    chunk: list[pa.Table] = []
    for i in range(partitions):
        day = date(2000, 1, 3) + timedelta(days=i)
        n = min(per_partition, rows - i * per_partition)
        part = bars(dataset, day, n, rng)
        chunk.append(part.append_column("date", pa.array([day] * n, pa.date32())).select(schema.names).cast(schema))
        if sum(t.num_rows for t in chunk) >= 1_000_000 or i == partitions - 1:
            table.append(pa.concat_tables(chunk))
            chunk = []


def ceiling(settings, dataset, s3, objects, limit: int, workers: int) -> dict[str, float]:
    """rows/s of the load's COPY alone (pgpq + psycopg; see the module docstring): into a table
    with the indexes, and into an index-less table created in the COPY's transaction."""
    import threading

    from tickerlake.core.clients import pg_connect
    from tickerlake.warehouse.datasets import read_object
    from tickerlake.warehouse.postgres import _as_target, copy_arrow

    tables, rows = [], 0
    for partition, objs in objects:
        for obj in objs:
            tables.append(_as_target(dataset, partition, read_object(s3, obj, dataset)))
            rows += tables[-1].num_rows
        if rows >= limit:
            break
    rates = {}
    for name, like in (("indexed table", "INCLUDING ALL"), ("new heap, no index", "")):
        with pg_connect(settings.pg) as conn:
            for k in range(workers):
                conn.execute(f"DROP TABLE IF EXISTS warehouse.bench_ceiling_{k}")
            if like:
                conn.execute(f"CREATE TABLE warehouse.bench_ceiling_0 (LIKE warehouse.bars_daily {like})")
            conn.commit()

        def copy(k: int, chunk, like: str = like) -> None:
            with pg_connect(settings.pg) as conn, conn.cursor() as cur:
                table = "warehouse.bench_ceiling_0"
                if not like:  # each connection its own, created in its transaction
                    table = f"warehouse.bench_ceiling_{k}"
                    cur.execute(f"CREATE TABLE {table} (LIKE warehouse.bars_daily)")
                for data in chunk:
                    copy_arrow(cur, table, data)
                    if like:
                        conn.commit()
                conn.commit()

        threads = [threading.Thread(target=copy, args=(k, tables[k::workers])) for k in range(workers)]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rates[name] = rows / (time.perf_counter() - t0)
    return rates


def cpu_by_program() -> dict[str, float]:
    """CPU seconds so far of this process (the load's client side), of Postgres (its live
    processes plus the exited backends its postmaster reaped) and of the S3 server."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    totals = {"load client": usage.ru_utime + usage.ru_stime, "postgres": 0.0, "s3 server": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            text = open(f"/proc/{stat}/stat").read()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        program = {"postgres": "postgres", "weed": "s3 server"}.get(name)
        if program:
            # utime, stime, and the reaped children's cutime, cstime (a postmaster's exited backends)
            totals[program] += sum(int(v) for v in fields[11:15]) / tick
    return totals


def checkpoint(settings) -> None:
    from tickerlake.core.clients import pg_connect

    with pg_connect(settings.pg, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def cpu_busy() -> float:
    """Seconds the machine's cores have been busy (all processes: the load, Postgres, the S3 server)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def main() -> int:
    args = parse_args()
    from tickerlake.dev.private import private_stack

    with private_stack():
        from tickerlake.core.clients import s3_client
        from tickerlake.core.iceberg import iceberg_catalog
        from tickerlake.core.names import ICEBERG_DIR
        from tickerlake.core.settings import get_settings
        from tickerlake.warehouse.base import check_dataset, load_dataset, raise_on_mismatch
        from tickerlake.warehouse.datasets import Datasets, list_partitions
        from tickerlake.warehouse.postgres import PostgresWarehouse

        settings = get_settings()
        s3 = s3_client(settings.s3)
        dataset = dataclasses.replace(Datasets.BARS_DAILY.value, name="bench_bars_daily",
                                      prefix=f"{ICEBERG_DIR}/{TABLE}/data/", iceberg=f"processed.{TABLE}")
        t0 = time.perf_counter()
        iceberg_table(iceberg_catalog(settings), args.rows, args.per_partition, dataset)
        print(f"prepared {args.rows:,} processed daily bars in an Iceberg table, "
              f"{-(-args.rows // args.per_partition):,} date partitions ({time.perf_counter() - t0:.1f}s)", flush=True)

        objects = list(list_partitions(s3, dataset).items())
        # The baseline first, each timed run after a checkpoint: neither pays for the other's
        # dirty buffers, checkpoints or autovacuum.
        checkpoint(settings)
        t0 = time.perf_counter()
        base_rows = baseline(settings, dataset, s3, objects, args.baseline_rows)
        base_seconds = time.perf_counter() - t0
        checkpoint(settings)

        with PostgresWarehouse(settings.pg) as wh:
            workers = settings.warehouse.load_workers
            busy0, by0, t0 = cpu_busy(), cpu_by_program(), time.perf_counter()
            report = load_dataset(wh, dataset, s3, workers=workers)
            bulk_seconds, busy = time.perf_counter() - t0, cpu_busy() - busy0
            by_program = {k: v - by0[k] for k, v in cpu_by_program().items()}
            t0 = time.perf_counter()
            first_check = check_dataset(wh, dataset, s3, full=False)
            raise_on_mismatch(first_check)
            check_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            rerun = load_dataset(wh, dataset, s3, workers=workers)
            rerun_check = check_dataset(wh, dataset, s3, full=False)
            rerun_seconds = time.perf_counter() - t0
            full_seconds = None
            if args.full_check:
                t0 = time.perf_counter()
                raise_on_mismatch(check_dataset(wh, dataset, s3, full=True))
                full_seconds = time.perf_counter() - t0

        checkpoint(settings)
        copy_only = ceiling(settings, dataset, s3, objects, args.ceiling_rows, workers)

    bulk_rate, base_rate = report.rows_loaded / bulk_seconds, base_rows / base_seconds
    print(f"\n{'run':<40}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    label = f"bulk (binary COPY, {workers} worker(s))"
    print(f"{label:<40}{report.rows_loaded:>12,}{bulk_seconds:>10.1f}{bulk_rate:>12,.0f}")
    print(f"{'baseline (psycopg executemany)':<40}{base_rows:>12,}{base_seconds:>10.1f}{base_rate:>12,.0f}")
    print(f"ratio (bulk rows/s / baseline rows/s): {bulk_rate / base_rate:.1f}")
    print("ceiling, COPY alone from memory (" + ", ".join(f"{k}: {v:,.0f} rows/s" for k, v in copy_only.items())
          + f"), {workers} connection(s), {min(args.ceiling_rows, args.rows):,} rows")
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in report.stages.items())
    print(f"bulk steps (seconds summed over the workers): {steps}")
    print(f"cores busy during the bulk load: {busy / bulk_seconds / (os.cpu_count() or 1):.0%} "
          f"({busy:.1f} CPU-seconds, {busy / report.rows_loaded * 1e6 if report.rows_loaded else 0:.2f} µs a row)")
    if report.rows_loaded:
        print("  of which " + ", ".join(f"{k} {v:.1f}s ({v / report.rows_loaded * 1e6:.2f} µs a row)"
                                        for k, v in by_program.items()))
    print(f"check after the load: {len(first_check):,} partitions, {sum(c.lake[0] for c in first_check):,} rows "
          f"in {check_seconds:.1f}s")
    print(f"rerun with nothing new: load ({'up to date at the loaded snapshot' if rerun.up_to_date else 'listed'}, "
          f"{rerun.rows_loaded} rows) plus check ({len(rerun_check)} partitions) in {rerun_seconds:.3f}s")
    if full_seconds is not None:
        print(f"full check (the lake read again): {full_seconds:.1f}s")
    print(f"machine: {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
