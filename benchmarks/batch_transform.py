"""Benchmark: the Spark batch transform against a single-process pandas + TA-Lib baseline.

    .venv/bin/python -m benchmarks.batch_transform --interval 1m --symbols 50 --days 52   # ~1M bars
    .venv/bin/python -m benchmarks.batch_transform --interval 1m --symbols 100 --days 256 --driver-memory 8g  # ~10M bars, ~18 min
    .venv/bin/python -m benchmarks.batch_transform --interval 1d --symbols 500 --days 500

It starts a private stack (nothing shared with `make up`), generates the bars with the synthetic
source, backfills them as CSV into the raw bucket, then runs, one after the other (the baseline
and the data generation in child processes, so that their memory is free before Spark's JVM
takes its heap: at 10M bars both need several GB):

- spark: `spark_jobs.transform_bars.run` (local[2]): validation + quarantine, dedup, indicators,
  Iceberg MERGE of bars and anomalies (the one copy of the processed data; a first load is one
  append);
- baseline: pandas + TA-Lib in one process: the same raw objects read with boto3, the same
  validation and dedup, TA-Lib indicators per symbol, Parquet by date written with pyarrow
  (no Iceberg: the baseline has no table format, so it does strictly less work).

Prints rows, wall seconds and rows/s for each and the ratio (spark rows/s ÷ baseline rows/s).
"""
from __future__ import annotations

import argparse
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import numpy as np
import pandas as pd


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_transform")
    parser.add_argument("--interval", choices=["1d", "1m"], default="1m")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=52, help="exchange sessions")
    parser.add_argument("--driver-memory", default="4g")
    return parser.parse_args()


def session_range(days: int) -> tuple[date, date]:
    from ingestion.sources.synthetic import sessions

    all_days = sessions(date(2024, 1, 1), date(2026, 1, 1))
    if days > len(all_days):
        raise SystemExit(f"--days at most {len(all_days)}")
    chosen = all_days[-days:]
    return chosen[0].date(), chosen[-1].date() + timedelta(days=1)


def baseline(settings, interval: str, start: date, end: date) -> int:
    """pandas + TA-Lib, one process: read raw CSV, validate, dedup, indicators, Parquet by date.

    One symbol at a time (the objects are keyed by symbol, and every step is per symbol): reading
    all 10M bars as text at once peaked at 20 GB, which is not how anyone would run it."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tickerlake.core.clients import arrow_s3_filesystem, s3_client
    from tickerlake.core.names import Bucket, raw_ohlcv_source_prefix
    from tickerlake.core.s3 import iter_keys

    s3 = s3_client(settings.s3)
    by_symbol: dict[str, list[str]] = {}
    for key in iter_keys(s3, Bucket.RAW.value, raw_ohlcv_source_prefix(interval, "synthetic")):
        symbol = key.split("/symbol=")[1].split("/")[0]
        by_symbol.setdefault(symbol, []).append(key)

    def read(key: str) -> pd.DataFrame:  # I/O bound: threads, as any pandas user would
        body = s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"].read()
        return pd.read_csv(io.BytesIO(body), dtype=str)

    outputs = []
    with ThreadPoolExecutor(8) as pool:
        for keys in by_symbol.values():
            raw = pd.concat(pool.map(read, keys), ignore_index=True)
            outputs += [_indicators(bars, interval) for _, bars in _valid_bars(raw).groupby("symbol", sort=False)]
    result = pd.concat(outputs, ignore_index=True)
    result["date"] = result["timestamp"].dt.tz_convert("America/New_York").dt.date.astype(str)
    ds.write_dataset(pa.Table.from_pandas(result, preserve_index=False),
                     f"{Bucket.PROCESSED.value}/bench-baseline/interval={interval}",
                     filesystem=arrow_s3_filesystem(settings.s3), format="parquet",
                     partitioning=["date"], partitioning_flavor="hive",
                     existing_data_behavior="delete_matching")
    return len(result)


def _valid_bars(raw: pd.DataFrame) -> pd.DataFrame:
    """The job's validation rules and dedup, in pandas: typed, valid, unique, in time order."""
    from tickerlake.core.datasets import OHLCV_COLUMNS

    frame = raw[OHLCV_COLUMNS].copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    for column in ("open", "high", "low", "close", "adj_close", "dividends", "stock_splits", "volume"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    prices = frame[["open", "high", "low", "close"]]
    bad = (frame["symbol"].isna() | frame["timestamp"].isna() | prices.isna().any(axis=1)
           | frame["volume"].isna() | (prices < 0).any(axis=1) | (frame["volume"] < 0)
           | (frame["high"] < frame["low"]))
    return frame[~bad].drop_duplicates(["symbol", "timestamp"]).sort_values(["symbol", "timestamp"])


def _indicators(bars: pd.DataFrame, interval: str) -> pd.DataFrame:
    """One symbol's indicators: TA-Lib's own functions, plus the job's code for what TA-Lib lacks."""
    import talib

    from spark_jobs import indicators

    c, h, low = (bars[k].to_numpy(dtype=float) for k in ("close", "high", "low"))
    out = bars.copy()
    out["sma_20"], out["sma_50"] = talib.SMA(c, 20), talib.SMA(c, 50)
    out["ema_12"], out["ema_26"] = talib.EMA(c, 12), talib.EMA(c, 26)
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(c, 12, 26, 9)
    out["rsi_14"] = talib.RSI(c, 14)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    out["atr_14"] = talib.ATR(h, low, c, 14)
    out["return_simple"] = talib.ROCP(c, 1)
    out["return_log"] = np.log(c / np.concatenate([[np.nan], c[:-1]]))
    extra = indicators.compute(bars, interval)
    for column in ("vwap", "volatility_20", "return_zscore", "volume_ratio",
                   "is_return_anomaly", "is_volume_spike"):
        out[column] = extra[column].to_numpy()
    return out


def _prepare(symbols: list[str], start: date, end: date, interval: str) -> int:
    """Generate and backfill the raw CSV (in a child process: its memory goes back to the OS)."""
    from ingestion.backfill import backfill
    from ingestion.sources.synthetic import SyntheticMarket
    from tickerlake.core.clients import s3_client
    from tickerlake.core.settings import get_settings

    s3, market, written = s3_client(get_settings().s3), SyntheticMarket(seed=1), 0
    for i in range(0, len(symbols), 10):  # bounded memory: 10 symbols at a time
        written += backfill(market, symbols[i:i + 10], start, end, interval, s3).rows
    return written


def _timed_baseline(interval: str, start: date, end: date) -> tuple[int, float]:
    from tickerlake.core.settings import get_settings

    t0 = time.perf_counter()
    rows = baseline(get_settings(), interval, start, end)
    return rows, time.perf_counter() - t0


def _in_child(function, *args):
    """Run `function(*args)` in a fresh process (spawn): the pandas baseline's and the data
    generator's memory is returned before Spark's JVM takes its heap (10M bars need both)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def main() -> int:
    args = parse_args()
    from tickerlake.dev.private import private_stack

    with private_stack({"TICKERLAKE_SPARK_DRIVER_MEMORY": args.driver_memory,
                        "TICKERLAKE_SPARK_SHUFFLE_PARTITIONS": "4"}):
        from spark_jobs import transform_bars
        from tickerlake.core.spark import build_spark_session

        start, end = session_range(args.days)
        symbols = [f"S{i:04d}" for i in range(args.symbols)]
        t0 = time.perf_counter()
        written = _in_child(_prepare, symbols, start, end, args.interval)
        print(f"prepared {written:,} {args.interval} bars ({args.symbols} symbols x {args.days} sessions, "
              f"{start}..{end}) as raw CSV in {time.perf_counter() - t0:.1f}s", flush=True)

        # The baseline first, in its own process: then the JVM below has the memory to itself.
        base_rows, base_seconds = _in_child(_timed_baseline, args.interval, start, end)
        print(f"baseline: {base_rows:,} rows in {base_seconds:.1f}s", flush=True)

        spark = build_spark_session("tickerlake-bench")
        spark.range(1).count()  # JVM warm-up is not the transform's cost
        t0 = time.perf_counter()
        summary = transform_bars.run(spark, argparse.Namespace(
            start=start, end=end, interval=args.interval, source="synthetic",
            lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS))
        spark_seconds = time.perf_counter() - t0
        spark.stop()

    spark_rate, base_rate = summary["rows"] / spark_seconds, base_rows / base_seconds
    print(f"\n{'run':<26}{'rows':>12}{'seconds':>10}{'rows/s':>12}")
    print(f"{'spark local[2] (full job)':<26}{summary['rows']:>12,}{spark_seconds:>10.1f}{spark_rate:>12,.0f}")
    print(f"{'pandas + TA-Lib baseline':<26}{base_rows:>12,}{base_seconds:>10.1f}{base_rate:>12,.0f}")
    print(f"ratio (spark rows/s / baseline rows/s): {spark_rate / base_rate:.2f}")
    print(f"spark stages (s): {summary['seconds']}")
    print(f"machine: {os.cpu_count()} cores; input objects: {summary['raw_files']:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
