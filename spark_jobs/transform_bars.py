"""Clean raw OHLCV bars and compute indicators and anomalies into the processed layer.

    spark-submit spark_jobs/transform_bars.py --start 2026-01-02 --end 2026-01-03 --interval 1d \
        --source synthetic

For the sessions in [start, end), split by symbol over the cores (one Python worker each,
`mapInPandas`; Spark keeps the Iceberg reads and commits):

1. reads each symbol's raw CSV objects from S3 (every column as text, so nothing is silently
   NULLed; spark_jobs/raw_bars.py);
2. enforces the schema; rows with a null key, an unparsable value, a negative price or volume,
   or high < low (or open/close outside [low, high]) go to `processed/quarantine/...` with the
   reason, and nowhere else;
3. deduplicates on (symbol, timestamp);
4. prepends each symbol's last `--lookback-bars` processed bars before `start` (from Iceberg), so
   the recursive indicators continue where the previous interval ended;
5. computes the indicators per symbol in time order (spark_jobs/indicators.py, TA-Lib's rules);
6. MERGEs into the Iceberg tables `processed.bars_<interval>` and `processed.anomalies` (scoped
   to the interval and to the symbols the run owns there: those whose raw objects it read and
   those its source had; another source's symbols on the same dates are not touched; a first
   load is one append), the one copy of the processed data: a rerun changes nothing. Repaired
   bars (open/close slightly outside [low, high]) are recorded in `processed/repairs/...`,
   quarantined rows in `processed/quarantine/...` (Parquet by date; a run replaces its dates'
   objects there, every source's).

Prints one JSON line with the counts (the transform DAG logs it).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from spark_jobs.raw_bars import NUMBERS
from tickerlake.core.datasets import ANOMALIES, BARS, OHLCV_COLUMNS, BarInterval
from tickerlake.core.errors import TickerlakeError, one_line_errors
from tickerlake.core.iceberg import current_snapshot, merge_into
from tickerlake.core.names import (
    RAW_SPAN_PATTERN,
    Bucket,
    RawSpan,
    Table,
    quarantine_prefix,
    raw_ohlcv_source_prefix,
    repairs_prefix,
    transform_result_key,
)
from tickerlake.core.s3 import iter_keys, iter_objects
from tickerlake.core.settings import get_settings

# Enough bars that EMA/RSI/ATR seeds older than the lookback weigh less than 1e-15.
DEFAULT_LOOKBACK_BARS = 600

# Parquet dictionaries only where they pay. A task writes one file per day partition, a few
# thousand bars each: under Parquet's default 2 MB no double column's dictionary ever overflows,
# so every price went through a dictionary that saves nothing. With 8 KB they fall back to plain
# at once, while symbol and source (one value per file) stay dictionary-encoded. Measured at 1M
# minute bars: the append took 8.3-10.9 s, now 4.9-5.2 s.
WRITE_PROPERTIES = {"write.parquet.dict-size-bytes": "8192"}

BARS_COLUMNS = BARS.column_names
EPOCH_DAY = date(1970, 1, 1)
RAW_SPAN_IN_KEY = re.compile(RAW_SPAN_PATTERN)
RAW_SYMBOL_IN_KEY = re.compile(r"/symbol=([^/]+)/")


class TransformError(TickerlakeError):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="transform_bars")
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument("--interval", type=BarInterval, choices=list(BarInterval), default=BarInterval.DAILY)
    parser.add_argument("--source", default="synthetic")
    parser.add_argument("--lookback-bars", type=int, default=DEFAULT_LOOKBACK_BARS)
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error(f"--end {args.end} must be after --start {args.start}")
    return args


def raw_objects(s3, interval: str, source: str, start: date, end: date) -> dict[str, int]:
    """The raw objects holding the interval's session dates, key -> size (one listing of the
    source's prefix, filtered on each key's `month=` or `date=`): the month objects, and the
    per-day objects that lakes written before 2026-12-07 hold."""
    prefix = raw_ohlcv_source_prefix(interval, source)
    first, last = start.isoformat(), (end - timedelta(days=1)).isoformat()
    objects = {}
    for obj in iter_objects(s3, Bucket.RAW.value, prefix):
        match = RAW_SPAN_IN_KEY.search(obj["Key"])
        if match is None:
            continue
        span, value = RawSpan(match[1]), match[2]
        if span.of(first) <= value <= span.of(last):
            objects[obj["Key"]] = obj["Size"]
    return dict(sorted(objects.items()))


def newest_per_bar(pdf):
    """One row per timestamp of a symbol's rows, in time order: of duplicates, the one from the
    latest raw object (then the lowest values, deterministically). The lookback rows (no object)
    never share a timestamp with the interval's."""
    ordered = pdf.sort_values(["timestamp", "source_file", *NUMBERS], ascending=[True, False, *[True] * len(NUMBERS)],
                              na_position="first", kind="stable")
    return ordered.drop_duplicates("timestamp", keep="first").drop(columns="source_file").reset_index(drop=True)


def output_schema():
    """What the per-symbol step returns: bars (`kind` 'bar'), rows set aside (`kind` 'quarantine'
    or 'repair', their raw text and note as JSON in `aside`, their session in `date`) and, per
    symbol with duplicates, their number (`kind` 'duplicates', in `volume`)."""
    return f"{BARS.spark_ddl()}, `kind` STRING, `aside` STRING"


def aside_schema(note: str) -> str:
    return ", ".join([*(f"`{c}` STRING" for c in OHLCV_COLUMNS), f"`{note}` STRING", "`source_file` STRING"])


def symbol_outputs(batches, interval: str, start: date, end: date):
    """mapInPandas: for each symbol of the partition, read its raw objects from S3, check them
    (spark_jobs/raw_bars.py), drop duplicates, prepend its lookback bars and compute the
    indicators (spark_jobs/indicators.py); yield its bars and the rows it set aside."""
    import pandas as pd

    from tickerlake.core.clients import s3_client

    work = pd.concat(list(batches), ignore_index=True)
    if work.empty:
        return
    s3 = s3_client(get_settings().s3)

    def get(key: str) -> bytes:
        return s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"].read()

    with ThreadPoolExecutor(8) as pool:  # the GETs wait on S3: overlap them
        for symbol, rows in work.groupby("symbol", sort=True):
            keys = sorted(rows["key"].dropna())
            history = rows[rows["key"].isna()].drop(columns=["key", "part"])
            yield from one_symbol(symbol, zip(keys, pool.map(get, keys)), history, interval, start, end)


def one_symbol(symbol: str, objects, history, interval: str, start: date, end: date):
    """One symbol's outputs (see `symbol_outputs`) from its objects' (key, body) pairs."""
    import json

    import numpy as np
    import pandas as pd

    from spark_jobs import indicators, raw_bars

    first, last = (start - EPOCH_DAY).days, (end - EPOCH_DAY).days
    good: list = []
    aside: list[tuple[str, str | None, int]] = []  # (kind, the row as JSON, its session)
    for key, body in objects:
        text = raw_bars.read_object(body)
        checked = raw_bars.check(text, key, symbol)
        source_file = Bucket.RAW.s3a(key)
        valid = checked["reason"].isna().to_numpy()
        day = checked["day"].to_numpy()
        filed = checked["filed"].to_numpy()
        filed = np.where(filed < 0, np.maximum(checked["span_first"].to_numpy(), first), filed)
        quarantined = ~valid & (filed >= first) & (filed < last)
        ours = valid & (day >= first) & (day < last)
        repaired = ours & checked["repair"].notna().to_numpy()
        for mask, kind, note, when in ((quarantined, "quarantine", "reason", filed),
                                       (repaired, "repair", "repair", day)):
            for i in np.flatnonzero(mask):
                record = {c: text[c][int(i)].as_py() for c in OHLCV_COLUMNS}
                record.update({note: checked[note].iat[int(i)], "source_file": source_file})
                aside.append((kind, json.dumps(record), when[i]))
        kept = checked[ours].drop(columns=["reason", "repair", "filed", "span_first"])
        good.append(kept.assign(source_file=source_file))
    bars = pd.concat(good, ignore_index=True) if good else pd.DataFrame()
    duplicates = 0
    if not bars.empty:
        bars["date"] = pd.to_datetime(bars.pop("day"), unit="D")
        received = len(bars)
        if not history.empty:
            history = history.assign(date=pd.to_datetime(history["date"]), source_file=None,
                                     timestamp=pd.to_datetime(history["timestamp"], utc=True))
            bars = pd.concat([history, bars], ignore_index=True)
        # Duplicates are dropped here, where the symbol's rows already are: no shuffle of their own.
        out = indicators.compute(newest_per_bar(bars), interval)
        out = out[out["date"] >= pd.Timestamp(start)].reset_index(drop=True)
        yield out[BARS_COLUMNS].assign(kind="bar", aside=None)
        duplicates = received - len(out)
    if duplicates:
        aside.append(("duplicates", None, first))
    if aside:
        frame = pd.DataFrame({c: pd.Series([None] * len(aside), dtype=object) for c in BARS_COLUMNS})
        frame["symbol"] = symbol
        frame["kind"] = [kind for kind, _, _ in aside]
        frame["aside"] = [record for _, record, _ in aside]
        frame["date"] = pd.to_datetime([day for _, _, day in aside], unit="D")
        frame["volume"] = [duplicates if kind == "duplicates" else None for kind, _, _ in aside]
        yield frame


def balanced_parts(spark, objects: dict[str, int]) -> dict[str, int]:
    """symbol -> the `part` value of its partition: symbols spread over the cores by the bytes of
    their objects (largest first, each to the least loaded), so that both cores finish together.

    The values are chosen so that Spark's hash partitioning (`repartition(n, "part")`: pmod of
    Murmur3) puts each in a partition of its own: n distinct small integers often collide."""
    from pyspark.sql import functions as F

    sizes: dict[str, int] = {}
    for key, size in objects.items():
        symbol = symbol_of(key)
        sizes[symbol] = sizes.get(symbol, 0) + size
    n = max(1, min(len(sizes), spark.sparkContext.defaultParallelism))
    value_of: dict[int, int] = {}
    for row in spark.range(64 * n).select("id", F.expr(f"pmod(hash(id), {n})").alias("p")).collect():
        value_of.setdefault(row.p, row.id)
    load, parts = [0] * n, {}
    for symbol, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        target = load.index(min(load))
        load[target] += size
        parts[symbol] = value_of[target]
    return parts


def _import_worker_modules(batches):
    from spark_jobs import indicators, raw_bars  # noqa: F401
    from tickerlake.core import clients  # noqa: F401

    yield from batches


def start_python_workers(spark) -> None:
    """One trivial task per core through the same Python path as the per-symbol step: Spark keeps
    its Python workers for the next tasks, with these modules imported."""
    cores = spark.sparkContext.defaultParallelism
    spark.range(0, cores, numPartitions=cores).mapInPandas(_import_worker_modules, "id BIGINT").collect()


def ensure_tables(spark, interval: str) -> tuple[str, str]:
    from tickerlake.core.iceberg import create_declared_table, ensure_namespaces

    ensure_namespaces(spark)
    bars = Table.bars(interval)
    bars_name = create_declared_table(spark, bars, BARS, properties=WRITE_PROPERTIES)
    anomalies_name = create_declared_table(spark, Table.ANOMALIES, ANOMALIES, properties=WRITE_PROPERTIES)
    return bars_name, anomalies_name


def replace_partitions(frame, bucket: Bucket, prefix: str, days: list[date], s3) -> None:
    """Replace the Parquet of exactly these dates: delete their objects, then append. A crash in
    between leaves a gap that the rerun fills; nothing is ever doubled. The dates' objects are
    found by one listing of their key range (keys sort by date), not a listing per date."""
    wanted = {f"date={day.isoformat()}" for day in days}
    # from just after the day before the first ("~" sorts after "/"), to the last day's end
    start_after = f"{prefix}date={min(days) - timedelta(days=1)}~" if days else ""
    keys = [{"Key": key} for key in iter_keys(s3, bucket.value, prefix, start_after=start_after,
                                              until=f"{prefix}date={max(days)}/~")
            if key[len(prefix):].split("/", 1)[0] in wanted] if days else []
    for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        s3.delete_objects(Bucket=bucket.value, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
    if frame is not None:
        # One file per date: fewer, larger objects for readers (and fewer S3 commits here).
        frame.repartition("date").write.mode("append").partitionBy("date").parquet(bucket.s3a(prefix))


@contextlib.contextmanager
def _timed(timings: dict, stage: str):
    started = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - started, 2)


def run(spark, args: argparse.Namespace, settings=None) -> dict:
    from functools import partial

    from pyspark.sql import Row, Window
    from pyspark.sql import functions as F

    from tickerlake.core.clients import s3_client

    settings = settings or get_settings()
    interval = BarInterval(args.interval).value
    s3 = s3_client(settings.s3)
    # The Python workers start (a fork, pandas, pyarrow, these modules: 2-3 s) while the driver
    # creates the tables and lists the raw objects, instead of after.
    warm = threading.Thread(target=start_python_workers, args=(spark,), daemon=True)
    warm.start()
    timings: dict[str, float] = {}
    with ThreadPoolExecutor(1) as pool:  # the listing (S3) while the JVM creates the tables (catalog)
        listing = pool.submit(raw_objects, s3, interval, args.source, args.start, args.end)
        with _timed(timings, "tables"):
            bars_table, anomalies_table = ensure_tables(spark, interval)
    days = [args.start + timedelta(days=i) for i in range((args.end - args.start).days)]

    with _timed(timings, "list_raw"):  # what is left of the listing, and the symbols' spread
        objects = listing.result()
        if not objects:
            raise TransformError(f"no raw objects for source={args.source} interval={interval} "
                                 f"in {args.start}..{args.end} (run the backfill first)")
        symbols = symbols_of(list(objects))
        parts = balanced_parts(spark, objects)

    # What each partition works on: its symbols' raw objects, and their lookback (each symbol's
    # last bars before the interval, from the processed table).
    part_of = spark.createDataFrame(list(parts.items()), "symbol STRING, part BIGINT")
    to_read = spark.createDataFrame([(symbol_of(key), key) for key in objects], "symbol STRING, key STRING")
    history = (spark.table(bars_table).where(F.col("date") < F.lit(args.start))
               .join(F.broadcast(part_of), "symbol")
               .withColumn("_r", F.row_number().over(Window.partitionBy("symbol")
                                                     .orderBy(F.col("timestamp").desc())))
               .where(F.col("_r") <= args.lookback_bars)
               .select(*OHLCV_COLUMNS, "date", F.lit(None).cast("string").alias("key"), "part"))
    work = (to_read.join(F.broadcast(part_of), "symbol")
            .select(*[F.lit(None).alias(c) if c != "symbol" else F.col(c) for c in OHLCV_COLUMNS],
                    F.lit(None).alias("date"), "key", "part"))
    work = work.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in history.schema.fields])
    outputs = (work.unionByName(history).repartition(len(set(parts.values())), "part")
               .mapInPandas(partial(symbol_outputs, interval=interval, start=args.start, end=args.end),
                            schema=output_schema()))
    warm.join()
    with _timed(timings, "read_check_indicators"):
        # A checkpoint: the per-symbol step (S3 reads, checks, indicators) runs once, and the
        # quarantine, repairs, bars and anomalies below are read from it.
        result = outputs.localCheckpoint(eager=True)
        # per kind: rows, the duplicates' count (in `volume`) and the bars' anomalies
        counts = {row.kind: row for row in result.groupBy("kind").agg(
            F.count(F.lit(1)).alias("n"), F.sum("volume").alias("volume"),
            F.sum(F.col("is_return_anomaly").cast("int") + F.col("is_volume_spike").cast("int")).alias("anomalies"),
        ).collect()}
    none = Row(n=0, volume=0, anomalies=0)
    rows, anomaly_count = counts.get("bar", none).n, int(counts.get("bar", none).anomalies or 0)
    duplicates = int(counts.get("duplicates", none).volume or 0)

    # Quarantine: every raw column as text, the reason and the file it came from, filed under a
    # session of the interval; a month object's rows of other sessions are not this run's.
    with _timed(timings, "quarantine"):
        bad_count = counts.get("quarantine", none).n
        bad = (result.where(F.col("kind") == "quarantine")
               .select(F.from_json("aside", aside_schema("reason")).alias("a"), "date")
               .select("a.*", "date").withColumn("quarantined_for", F.lit(f"{args.start}..{args.end}")))
        replace_partitions(bad if bad_count else None, Bucket.PROCESSED, quarantine_prefix(interval), days, s3)
    with _timed(timings, "repairs"):
        repaired_count = counts.get("repair", none).n
        repaired = (result.where(F.col("kind") == "repair")
                    .select(F.from_json("aside", aside_schema("repair")).alias("a"), "date")
                    .select("a.*", "date").withColumn("repaired_for", F.lit(f"{args.start}..{args.end}")))
        replace_partitions(repaired if repaired_count else None, Bucket.PROCESSED, repairs_prefix(interval),
                           days, s3)
    result = result.where(F.col("kind") == "bar").select(*BARS_COLUMNS)
    with _timed(timings, "iceberg_bars"):
        # the one copy: Iceberg (the gate and the warehouse read its snapshots)
        # The run owns, in the interval, the symbols it read and those its source had there (a
        # symbol whose raw objects are gone must lose its rows): not another source's symbols.
        owned = sorted(set(symbols) | {row.symbol for row in spark.table(bars_table).where(
            f"{_scope(args)} AND source = {_sql_text(args.source)}").select("symbol").distinct().collect()})
        bars_merge = merge_into(result, bars_table, BARS.keys, scope=f"{_scope(args)} AND {_symbol_in(owned)}",
                                first_load_scope=_scope(args), unique=True, clustered_by=BARS.partitioned_by)
        # what the gate validates: this commit (or a later one that contains it), read right away
        bars_snapshot = current_snapshot(spark, bars_table)

    anomalies = (result.where("is_return_anomaly OR is_volume_spike")
                 .withColumn("kind", F.explode(F.filter(F.array(
                     F.when(F.col("is_return_anomaly"), F.lit("return_zscore")),
                     F.when(F.col("is_volume_spike"), F.lit("volume_spike"))), lambda k: k.isNotNull())))
                 .withColumn("interval", F.lit(interval))
                 .select(*ANOMALIES.column_names)
                 # a few rows a day: one task writes them, one file per day rather than one per core
                 .coalesce(1))
    with _timed(timings, "iceberg_anomalies"):
        # ... and their anomalies.
        interval_scope = f"`interval` = '{interval}' AND {_scope(args)}"
        anomalies_merge = merge_into(anomalies, anomalies_table, ANOMALIES.keys,
                                     scope=f"{interval_scope} AND {_symbol_in(owned)}",
                                     first_load_scope=interval_scope, unique=True,
                                     clustered_by=ANOMALIES.partitioned_by)
    summary = {
        "interval": interval, "source": args.source, "start": args.start.isoformat(),
        "end": args.end.isoformat(), "raw_files": len(objects), "rows": rows,
        "quarantined": bad_count, "repaired": repaired_count, "duplicates_dropped": duplicates,
        "anomalies": anomaly_count, "iceberg_upserted": bars_merge.upserted,
        "iceberg_deleted": bars_merge.deleted, "anomalies_upserted": anomalies_merge.upserted,
        "bars_table": bars_table, "anomalies_table": anomalies_table,
        "bars_snapshot": bars_snapshot,
        "quarantine": Bucket.PROCESSED.s3a(quarantine_prefix(interval)),
        "seconds": timings,
    }
    record_result(summary)
    # `result`'s checkpoint blocks go when it is garbage-collected (Spark's ContextCleaner).
    return summary


def record_result(summary: dict) -> None:
    """The summary next to the data (`s3://processed/transform/bars/...`, replaced by a rerun):
    the quality gate validates the snapshot recorded here, not whatever is current when it runs."""
    from tickerlake.core.clients import s3_client

    key = transform_result_key(summary["interval"], summary["start"], summary["end"])
    s3_client(get_settings().s3).put_object(Bucket=Bucket.PROCESSED.value, Key=key, ContentType="application/json",
                                            Body=json.dumps(summary, sort_keys=True, default=str).encode())


def _scope(args) -> str:
    return f"date >= DATE'{args.start.isoformat()}' AND date < DATE'{args.end.isoformat()}'"


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _symbol_in(symbols: list[str]) -> str:
    return f"symbol IN ({', '.join(map(_sql_text, symbols))})" if symbols else "FALSE"


def symbol_of(key: str) -> str:
    """The symbol of a raw object (`.../symbol=AAPL/...`)."""
    match = RAW_SYMBOL_IN_KEY.search(key)
    if match is None:
        raise TransformError(f"{key}: not a raw OHLCV object (no symbol= in the key)")
    return match[1]


def symbols_of(paths: list[str]) -> list[str]:
    """The symbols whose raw objects the run read."""
    return sorted({symbol_of(path) for path in paths})


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.metrics import push_run
    from tickerlake.core.settings import get_settings
    from tickerlake.core.spark import build_spark_session

    args = parse_args(argv)
    spark = build_spark_session(f"tickerlake-transform-{args.interval}")
    began = time.monotonic()
    key = {"interval": args.interval, "source": args.source}
    try:
        summary = run(spark, args)
    except Exception:
        push_run("ohlcv_transform", key, rows=0, seconds=time.monotonic() - began, failed=True,
                 settings=get_settings().monitoring)
        raise
    finally:
        spark.stop()
    push_run("ohlcv_transform", key, rows=summary["rows"], seconds=time.monotonic() - began,
             quarantined=summary["quarantined"], settings=get_settings().monitoring)
    print("TRANSFORM_SUMMARY " + json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
