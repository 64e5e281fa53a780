"""Stream equals batch: recompute the 1-minute bars from `realtime.ticks` and compare them with the
stream's `realtime.bars_1m`, row by row.

    spark-submit spark_jobs/compare_bars.py [--date 2026-01-02]

For a closed session (`--date`; all dates when omitted). Every column must be equal, except `vwap`
(a sum of products, whose summation order differs between the two plans), which must agree to a
relative 1e-12. Prints one JSON line with the count and the first differences, and exits 1 when
there is any difference (so the task fails).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import date

from spark_jobs.stream_ticks import minute_bars
from tickerlake.core.datasets import LIVE_BARS
from tickerlake.core.errors import one_line_errors
from tickerlake.core.names import Table
from tickerlake.core.settings import Settings, get_settings

EXACT = [c for c in LIVE_BARS.column_names if c not in ("symbol", "window_start", "vwap")]
VWAP_RELATIVE = 1e-12


@dataclass(frozen=True)
class Differences:
    count: int
    compared: int
    sample: tuple[str, ...]

    def lines(self) -> list[str]:
        return list(self.sample)


def compare_minute_bars(spark, settings: Settings, day: date | None = None, sample: int = 5) -> Differences:
    from pyspark.sql import functions as F

    catalog = settings.iceberg.catalog
    ticks = spark.table(f"{catalog}.{Table.TICKS}")
    stored = spark.table(f"{catalog}.{Table.LIVE_BARS_1M}")
    if day is not None:
        ticks, stored = ticks.where(F.col("date") == F.lit(day)), stored.where(F.col("date") == F.lit(day))
    value_columns = [c for c in LIVE_BARS.column_names if c not in ("symbol", "window_start")]
    batch = minute_bars(ticks, 0).select("symbol", "window_start",
                                         *[F.col(c).alias(f"batch_{c}") for c in value_columns])
    streamed = stored.select("symbol", "window_start", *[F.col(c).alias(f"stream_{c}") for c in value_columns])
    joined = batch.join(streamed, ["symbol", "window_start"], "full_outer")
    differs = F.lit(False)
    for column in EXACT:
        differs = differs | ~F.col(f"batch_{column}").eqNullSafe(F.col(f"stream_{column}"))
    b, s = F.col("batch_vwap"), F.col("stream_vwap")
    vwap_off = F.coalesce(F.abs(b - s) > F.abs(b) * VWAP_RELATIVE, b.isNull() != s.isNull())
    flagged = joined.withColumn("_differs", differs | vwap_off).cache()
    try:
        compared = flagged.count()
        different = flagged.where("_differs")
        count = different.count()
        rows = different.orderBy("symbol", "window_start").limit(sample).collect()
    finally:
        flagged.unpersist()
    shown = tuple(
        f"{r['symbol']} {r['window_start']}: " + ", ".join(
            f"{c} stream={r[f'stream_{c}']!r} batch={r[f'batch_{c}']!r}"
            for c in value_columns if r[f"stream_{c}"] != r[f"batch_{c}"])
        for r in rows)
    return Differences(count, compared, shown)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="compare_bars")
    parser.add_argument("--date", type=date.fromisoformat, default=None, help="a closed session (UTC date)")
    args = parser.parse_args(argv)
    settings = get_settings()
    spark = build_spark_session("tickerlake-compare-bars", settings)
    try:
        result = compare_minute_bars(spark, settings, args.date)
    finally:
        spark.stop()
    print("COMPARE_BARS " + json.dumps({"date": str(args.date) if args.date else "all",
                                        "compared": result.compared, "differences": result.count,
                                        "sample": result.lines()}))
    return 1 if result.count else 0


if __name__ == "__main__":
    sys.exit(main())
