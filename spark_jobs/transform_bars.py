"""Clean raw OHLCV bars and compute indicators and anomalies into the processed layer.

    spark-submit spark_jobs/transform_bars.py --start 2026-01-02 --end 2026-01-03 --interval 1d \
        --source synthetic

For the sessions in [start, end):

1. reads the raw CSV objects (every column as text, so nothing is silently NULLed);
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
import time
from datetime import date, timedelta

from tickerlake.core.datasets import ANOMALIES, BARS, OHLCV_COLUMNS, OHLCV_RAW_DDL, REPAIRED_OHLCV, BarInterval
from tickerlake.core.errors import TickerlakeError, one_line_errors
from tickerlake.core.iceberg import current_snapshot, merge_into
from tickerlake.core.market import spark_session_tz
from tickerlake.core.names import (
    RAW_SPAN_PATTERN,
    SYMBOL_PATTERN,
    Bucket,
    RawSpan,
    Table,
    quarantine_prefix,
    raw_ohlcv_source_prefix,
    repairs_prefix,
    transform_result_key,
)
from tickerlake.core.s3 import iter_keys
from tickerlake.core.settings import get_settings

PRICES = ("open", "high", "low", "close", "adj_close")
CORRUPT = "_corrupt_record"  # Spark's column for a CSV row it could not split into the schema
NUMBERS = (*PRICES, "volume", "dividends", "stock_splits")
# Open or close above the high (below the low) by at most this share of it: the bar is kept with
# its range widened (recorded in processed/repairs/); by more: quarantined (docs/batch.md).
OHLC_REPAIR_TOLERANCE = 0.01
# Enough bars that EMA/RSI/ATR seeds older than the lookback weigh less than 1e-15.
DEFAULT_LOOKBACK_BARS = 600

# Parquet dictionaries only where they pay. A task writes one file per day partition, a few
# thousand bars each: under Parquet's default 2 MB no double column's dictionary ever overflows,
# so every price went through a dictionary that saves nothing. With 8 KB they fall back to plain
# at once, while symbol and source (one value per file) stay dictionary-encoded. Measured at 1M
# minute bars: the append took 8.3-10.9 s, now 4.9-5.2 s.
WRITE_PROPERTIES = {"write.parquet.dict-size-bytes": "8192"}

BARS_COLUMNS = BARS.column_names
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


def raw_paths(s3, interval: str, source: str, start: date, end: date) -> list[str]:
    """The raw objects holding the interval's session dates (one listing of the source's prefix,
    filtered on each key's `month=` or `date=`): the month objects, and the per-day objects that
    lakes written before 2026-12-07 hold."""
    prefix = raw_ohlcv_source_prefix(interval, source)
    first, last = start.isoformat(), (end - timedelta(days=1)).isoformat()
    paths = []
    for key in iter_keys(s3, Bucket.RAW.value, prefix):
        match = RAW_SPAN_IN_KEY.search(key)
        if match is None:
            continue
        span, value = RawSpan(match[1]), match[2]
        if span.of(first) <= value <= span.of(last):
            paths.append(Bucket.RAW.s3a(key))
    return sorted(paths)


def validate(raw):
    """Typed columns plus `reason` (NULL for a valid row); the first failing rule names it."""
    from pyspark.sql import functions as F

    typed = raw.withColumn("ts", F.to_timestamp("timestamp"))
    for column in NUMBERS:
        # volume "1e3" or "1000.0" is fine; "abc" is not
        typed = typed.withColumn(f"_{column}_double", F.col(column).cast("double"))
        target = "bigint" if column == "volume" else "double"
        typed = typed.withColumn(f"_{column}", F.col(f"_{column}_double").cast(target))
    file_span = raw_file_span()
    top, bottom = F.greatest("_open", "_close"), F.least("_open", "_close")
    rules = [
        (F.col(CORRUPT).isNotNull(), F.lit(f"malformed CSV row: not {len(OHLCV_COLUMNS)} fields")),
        (F.col("symbol").isNull() | (F.trim("symbol") == ""), F.lit("null symbol")),
        (~F.col("symbol").rlike(SYMBOL_PATTERN), F.lit("invalid symbol")),
        (F.col("source").isNull() | (F.trim("source") == ""), F.lit("null source")),
        (F.col("timestamp").isNull() | (F.trim("timestamp") == ""), F.lit("null timestamp")),
        (F.col("ts").isNull(), F.concat(F.lit("unparsable timestamp: "), F.col("timestamp"))),
    ]
    for column in NUMBERS:
        required = column in ("open", "high", "low", "close", "volume")
        missing = F.col(column).isNull() | (F.trim(column) == "")
        if required:
            rules.append((missing, F.lit(f"null {column}")))
        rules.append((~missing & F.col(f"_{column}").isNull(), F.lit(f"unparsable {column}")))
        # "NaN" and "Infinity" parse as doubles, and NaN compares greater than every number
        rules.append((F.isnan(f"_{column}_double") | (F.abs(f"_{column}_double") == float("inf")),
                      F.lit(f"non-finite {column}")))
    rules += [
        (F.abs("_volume_double") >= 2.0 ** 63, F.lit("volume out of range")),
        # a row filed under another session than its own would be read with the wrong day's data
        (~F.date_format(session_date("ts"), "yyyy-MM-dd").startswith(file_span),
         F.when(F.length(file_span) == 7, F.lit("timestamp not in its file's month"))
         .otherwise(F.lit("timestamp not on its file's session date"))),
        (F.least(*[F.col(f"_{c}") for c in ("open", "high", "low", "close")]) < 0, F.lit("negative price")),
        (F.col("_volume") < 0, F.lit("negative volume")),
        (F.col("_high") < F.col("_low"), F.lit("high < low")),
        ((top - F.col("_high") > OHLC_REPAIR_TOLERANCE * F.col("_high"))
         | (F.col("_low") - bottom > OHLC_REPAIR_TOLERANCE * F.col("_low")),
         F.lit(f"open/close outside [low, high] by more than {OHLC_REPAIR_TOLERANCE:.0%}")),
    ]
    reason = F.lit(None).cast("string")
    for condition, text in reversed(rules):
        reason = F.when(condition, text).otherwise(reason)
    # Kept, repaired: open or close slightly outside [low, high] (vendors' rounding, an auction
    # print). Dropping the bar would leave a hole that shifts every indicator after it; the range
    # is widened to include them instead and the repair is recorded with the original values.
    repair = F.when(reason.isNull() & ((top > F.col("_high")) | (bottom < F.col("_low"))), F.concat_ws(
        "; ", F.when(top > F.col("_high"), F.format_string("high %s widened to %s", F.col("high"), top)),
        F.when(bottom < F.col("_low"), F.format_string("low %s widened to %s", F.col("low"), bottom))))
    return (typed.withColumn("reason", reason).withColumn("repair", repair)
            .withColumn("_high", F.greatest("_high", F.when(F.col("repair").isNotNull(), top)))
            .withColumn("_low", F.least("_low", F.when(F.col("repair").isNotNull(), bottom)))
            .drop(*[f"_{c}_double" for c in NUMBERS]))


def narrow(checked):
    """What the later stages read of the checked rows, for the cache: the typed columns, and the
    raw text only of rows set aside (quarantined or repaired). Caching every row's text as well
    cost about 3.5 of 13 s at 1M bars."""
    from pyspark.sql import functions as F

    kept_raw = F.col("reason").isNotNull() | F.col("repair").isNotNull()
    text = [F.when(kept_raw, F.col(c)).alias(c) for c in OHLCV_COLUMNS if c not in ("symbol", "source")]
    return checked.select("symbol", "source", "ts", *[f"_{c}" for c in NUMBERS], "date", "source_file",
                          "reason", "repair", *text)


def newest_per_bar(pdf):
    """One row per timestamp of a symbol's rows, in time order: of duplicates, the one from the
    latest raw object (then the lowest values, deterministically). The lookback rows (no object)
    never share a timestamp with the interval's."""
    ordered = pdf.sort_values(["timestamp", "source_file", *NUMBERS], ascending=[True, False, *[True] * len(NUMBERS)],
                              na_position="first", kind="stable")
    return ordered.drop_duplicates("timestamp", keep="first").drop(columns="source_file").reset_index(drop=True)


def raw_file_span():
    """The session date (`2026-01-02`) or month (`2026-01`) the row's raw object holds."""
    from pyspark.sql import functions as F

    return F.regexp_extract("source_file", RAW_SPAN_PATTERN, 2)


def filed_date(start: date):
    """The session a row is filed under (the quarantine's partition): a day object's date; in a
    month object, the row's own session if it lies in that month, else (no usable timestamp, or
    one outside the month) the first session of the run's interval in that month, so that a
    rerun of the interval files it the same way."""
    from pyspark.sql import functions as F

    span = raw_file_span()
    is_month = F.length(span) == 7
    span_start = F.to_date(F.when(is_month, F.concat(span, F.lit("-01"))).otherwise(span))
    own = F.when(F.date_format("date", "yyyy-MM-dd").startswith(span), F.col("date"))
    return F.when(is_month, F.coalesce(own, F.greatest(span_start, F.lit(start)))).otherwise(span_start)


def session_date(column):
    """The session date: the bar's time in its symbol's exchange's time zone (core/market.py)."""
    from pyspark.sql import functions as F

    return F.to_date(F.from_utc_timestamp(column, F.expr(spark_session_tz("symbol"))))


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
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from spark_jobs import indicators
    from tickerlake.core.clients import s3_client

    settings = settings or get_settings()
    interval = BarInterval(args.interval).value
    s3 = s3_client(settings.s3)
    bars_table, anomalies_table = ensure_tables(spark, interval)
    days = [args.start + timedelta(days=i) for i in range((args.end - args.start).days)]
    in_interval = (F.col("date") >= F.lit(args.start)) & (F.col("date") < F.lit(args.end))

    timings: dict[str, float] = {}
    with _timed(timings, "list_raw"):
        paths = raw_paths(s3, interval, args.source, args.start, args.end)
        if not paths:
            raise TransformError(f"no raw objects for source={args.source} interval={interval} "
                                 f"in {args.start}..{args.end} (run the backfill first)")
        symbols = symbols_of(paths)
        # Spark checks every path again here (one HEAD each): timed with the listing it repeats.
        # PERMISSIVE with a corrupt-record column: a row with too few or too many fields (another
        # separator, a stray comma) is kept with its text and quarantined, never shifted or cut.
        raw = (spark.read.schema(f"{OHLCV_RAW_DDL}, `{CORRUPT}` STRING").option("header", True)
               .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
               .csv(paths).withColumn("source_file", F.input_file_name()))
    checked = narrow(validate(raw).withColumn("date", session_date("ts"))).cache()
    with _timed(timings, "read_validate"):
        checked.count()

    # Quarantine: every raw column as text, the reason and the file it came from, filed under a
    # session of the interval (`filed_date`); a month object's rows of other sessions are not this
    # run's.
    bad = (checked.where(F.col("reason").isNotNull())
           .select(*OHLCV_COLUMNS, "reason", "source_file", filed_date(args.start).alias("date"))
           .where(in_interval)
           .withColumn("quarantined_for", F.lit(f"{args.start}..{args.end}")))
    with _timed(timings, "quarantine"):
        bad_count = bad.count()
        replace_partitions(bad if bad_count else None, Bucket.PROCESSED, quarantine_prefix(interval), days, s3)

    repaired = (checked.where(F.col("reason").isNull() & F.col("repair").isNotNull()).where(in_interval)
                .select(*REPAIRED_OHLCV.column_names[:-1])
                .withColumn("repaired_for", F.lit(f"{args.start}..{args.end}")))
    with _timed(timings, "repairs"):
        repaired_count = repaired.count()
        replace_partitions(repaired if repaired_count else None, Bucket.PROCESSED, repairs_prefix(interval),
                           days, s3)

    good = checked.where(F.col("reason").isNull()).where(in_interval).select(
        F.col("symbol"), F.col("ts").alias("timestamp"),
        *[F.col(f"_{c}").alias(c) for c in NUMBERS], F.col("source"), F.col("date"),
        F.col("source_file"))

    # Lookback: each symbol's last bars before the interval, from the processed table.
    history = (spark.table(bars_table).where(F.col("date") < F.lit(args.start))
               .join(good.select("symbol").distinct(), "symbol")
               .select(*OHLCV_COLUMNS, "date")
               .withColumn("_r", F.row_number().over(Window.partitionBy("symbol")
                                                     .orderBy(F.col("timestamp").desc())))
               .where(F.col("_r") <= args.lookback_bars).drop("_r")
               .withColumn("source_file", F.lit(None).cast("string")))
    series = good.unionByName(history)

    def compute(pdf):
        # Duplicates are dropped here, where the symbol's rows already are: no shuffle of its own.
        out = indicators.compute(newest_per_bar(pdf), interval)
        return out[BARS_COLUMNS]

    computed = series.groupBy("symbol").applyInPandas(compute, schema=BARS.spark_ddl())
    with _timed(timings, "indicators"):
        # A checkpoint, not cache(): it cuts the lineage, so unpersisting `checked` below cannot
        # make Spark rebuild this (uncaching a plan re-plans and empties every cache built on it).
        result = computed.where(in_interval).localCheckpoint(eager=True)
        rows = result.count()
        duplicates = good.count() - rows  # the interval's valid rows, less the one kept per bar
    # Every later stage reads `result` only: give it the memory the raw rows held (at 10M bars
    # both no longer fit an 8 GB driver, and blocks go to disk and back).
    checked.unpersist()
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
                 .select(*ANOMALIES.column_names))
    with _timed(timings, "iceberg_anomalies"):
        # ... and their anomalies.
        interval_scope = f"`interval` = '{interval}' AND {_scope(args)}"
        anomalies_merge = merge_into(anomalies, anomalies_table, ANOMALIES.keys,
                                     scope=f"{interval_scope} AND {_symbol_in(owned)}",
                                     first_load_scope=interval_scope, unique=True,
                                     clustered_by=ANOMALIES.partitioned_by)
    summary = {
        "interval": interval, "source": args.source, "start": args.start.isoformat(),
        "end": args.end.isoformat(), "raw_files": len(paths), "rows": rows,
        "quarantined": bad_count, "repaired": repaired_count, "duplicates_dropped": duplicates,
        "anomalies": anomalies.count(), "iceberg_upserted": bars_merge.upserted,
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


def symbols_of(paths: list[str]) -> list[str]:
    """The symbols whose raw objects the run read (`.../symbol=AAPL/...`)."""
    return sorted({match[1] for path in paths if (match := RAW_SYMBOL_IN_KEY.search(path))})


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
