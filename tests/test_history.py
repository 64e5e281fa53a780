"""Long histories and CSVs as people have them, on the real stack: the usual download layout (one
file per symbol, `Date,...,Adj Close,Volume`) for a US and a London symbol over ten years of the
1990s in one run, and an interval of the current year: backfill -> Spark transform -> gate, each
symbol on its own exchange's calendar. Bars with open/close slightly outside [low, high] are
kept with the range widened and recorded; far outside, quarantined. And `ohlcv_backfill` with
the Alpha Vantage source (a FAKE server with constructed replies, tests/fake_alphavantage.py)
for a date long before the DAG's schedule began."""
from __future__ import annotations

import argparse
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ingestion.backfill import backfill
from ingestion.sources.csv_dir import CsvDirectorySource
from spark_jobs import transform_bars
from tickerlake.core.market import sessions_in_range
from tickerlake.core.names import Bucket, Table, quarantine_prefix, repairs_prefix
from tickerlake.quality import run_gate

pytestmark = pytest.mark.spark

US, LONDON = "HIST", "HIST.L"  # symbols no other test writes
DECADE = (date(1990, 1, 1), date(2000, 1, 1))  # sessions no other test writes
THIS_YEAR = (date(2026, 8, 3), date(2026, 9, 1))
REPAIRED_DAY = date(1995, 7, 3)  # London, summer: midnight there is 23:00 UTC the day before


def download_file(path, symbol: str, days: list[date], seed: int, adjusted: bool) -> pd.DataFrame:
    """A random walk written the way Yahoo Finance's download writes it."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, len(days))))
    open_ = np.concatenate([[50], close[:-1]]) * np.exp(rng.normal(0, 0.004, len(days)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, len(days)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, len(days)))
    frame = pd.DataFrame({"Date": [d.isoformat() for d in days], "Open": open_.round(4), "High": high.round(4),
                          "Low": low.round(4), "Close": close.round(4), "Adj Close": (close * 0.97).round(4),
                          "Volume": rng.integers(10_000, 1_000_000, len(days))})
    if not adjusted:
        frame = frame.drop(columns="Adj Close")
    frame.to_csv(path, index=False)
    return frame


def transform(spark, start: date, end: date) -> dict:
    args = argparse.Namespace(start=start, end=end, interval="1d", source="csv",
                              lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS)
    return transform_bars.run(spark, args)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory, stack, s3):
    folder = tmp_path_factory.mktemp("downloads")
    files = {}
    for symbol, mic, seed, adjusted in ((US, "XNYS", 1, True), (LONDON, "XLON", 2, False)):
        days = sessions_in_range(*DECADE, mic) + sessions_in_range(*THIS_YEAR, mic)
        name = symbol.lower() if symbol == US else symbol  # lower-case file names are common
        files[symbol] = download_file(folder / f"{name}.csv", symbol, days, seed, adjusted)
    # a vendor's close 0.2% above its high: kept, the high widened to it, the repair recorded
    london = files[LONDON]
    row = london.index[london["Date"] == REPAIRED_DAY.isoformat()][0]
    london.loc[row, "Close"] = round(london.loc[row, "High"] * 1.002, 4)
    london.to_csv(folder / f"{LONDON}.csv", index=False)
    return folder, files


def test_ten_years_of_downloads_for_a_us_and_a_london_symbol_pass_the_gate_in_one_run(downloads, spark, settings, s3):
    folder, files = downloads
    written = backfill(CsvDirectorySource(folder), [US, LONDON], *DECADE, "1d", s3)
    assert written.missing == () and written.rows == sum(f["Date"].lt("2000").sum() for f in files.values())

    summary = transform(spark, *DECADE)
    assert summary["rows"] == written.rows and summary["quarantined"] == 0 and summary["repaired"] == 1
    gate = run_gate("1d", *DECADE, settings)  # raises QualityGateFailed naming what failed
    assert gate.success and gate.rows == written.rows
    assert {e["exchange"] for e in gate.details["exchanges"]} == {"XNYS", "XLON"}

    bars = (spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}")
            .where(f"symbol IN ('{US}', '{LONDON}') AND date < DATE'2000-01-01'").toPandas())
    london = bars[bars["symbol"] == LONDON].set_index("date")
    source = files[LONDON].set_index("Date")
    # the session date is London's, not New York's (the bar's UTC time is the day before)
    repaired = london.loc[REPAIRED_DAY]
    assert repaired["close"] == source.loc[REPAIRED_DAY.isoformat(), "Close"] == repaired["high"]
    assert london["adj_close"].isna().all()  # the London file has no adjusted close
    assert len(london) == len(sessions_in_range(*DECADE, "XLON"))
    us = bars[bars["symbol"] == US].set_index("date").sort_index()
    assert np.allclose(us["adj_close"], files[US].set_index("Date").loc[[d.isoformat() for d in us.index], "Adj Close"])

    repairs = spark.read.parquet(Bucket.PROCESSED.s3a(repairs_prefix("1d"))).where(f"symbol = '{LONDON}'").collect()
    assert len(repairs) == 1 and repairs[0]["date"] == REPAIRED_DAY
    assert repairs[0]["repair"].startswith("high ") and "widened to" in repairs[0]["repair"]


def test_an_interval_of_the_current_year_from_the_same_files_passes_the_gate(downloads, spark, settings, s3):
    folder, _ = downloads
    written = backfill(CsvDirectorySource(folder), [US, LONDON], *THIS_YEAR, "1d", s3)
    summary = transform(spark, *THIS_YEAR)
    assert summary["rows"] == written.rows > 30 and summary["quarantined"] == 0
    assert run_gate("1d", *THIS_YEAR, settings).success


def test_open_or_close_far_outside_the_range_is_quarantined_and_slightly_outside_is_kept(stack, spark, settings,
                                                                                         s3, tmp_path):
    days = [date(1985, 3, 4), date(1985, 3, 5), date(1985, 3, 6)]
    (tmp_path / "REPR.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "1985-03-04,10,11,9,10.5,10.5,100\n"
        "1985-03-05,10.5,11,10,11.05,11.05,100\n"  # close 0.45% above the high: kept
        "1985-03-06,10.5,11,10,11.6,11.6,100\n")  # close 5.5% above the high: quarantined
    backfill(CsvDirectorySource(tmp_path), ["REPR"], days[0], date(1985, 3, 7), "1d", s3)
    summary = transform(spark, days[0], date(1985, 3, 7))
    assert (summary["rows"], summary["repaired"], summary["quarantined"]) == (2, 1, 1)
    bars = (spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}").where("symbol = 'REPR'")
            .orderBy("date").select("date", "high", "close").collect())
    assert [(r["date"], r["high"], r["close"]) for r in bars] == [(days[0], 11.0, 10.5), (days[1], 11.05, 11.05)]
    reasons = [r["reason"] for r in spark.read.parquet(Bucket.PROCESSED.s3a(quarantine_prefix("1d")))
               .where("symbol = 'REPR'").collect()]
    assert reasons == ["open/close outside [low, high] by more than 1%"]


def test_backfill_dag_with_alphavantage_for_a_date_before_its_schedule(stack, settings, s3):
    """`airflow dags test ohlcv_backfill 1995-03-02` (the DAG's schedule starts later): the run's
    interval is backfilled from Alpha Vantage (FAKE server), through one throttle reply; the batch
    holding an unknown symbol fails at once with one line naming it (no retry: it would not help),
    the other batch lands, and the run fails."""
    from tests.fake_alphavantage import API_KEY, FakeAlphaVantage, price
    from tickerlake.dev.airflow_local import run_airflow

    with FakeAlphaVantage({"AVHX": (date(1995, 1, 2), date(1995, 3, 31))}) as fake:
        fake.throttle_next, fake.throttle_only = 1, "AVHX"  # whichever batch runs first
        env = {"TICKERLAKE_ALPHAVANTAGE_API_KEY": API_KEY, "TICKERLAKE_ALPHAVANTAGE_URL": fake.url,
               "TICKERLAKE_ALPHAVANTAGE_BACKOFF_SECONDS": "0.1", "TICKERLAKE_ALPHAVANTAGE_REQUESTS_PER_MINUTE": "100",
               "TICKERLAKE_ALPHAVANTAGE_REQUESTS_PER_DAY": "10000"}
        conf = {"source": "alphavantage", "symbols": ["avhx", "nope"], "batch_size": 1}
        done = run_airflow(["dags", "test", "ohlcv_backfill", "1995-03-02", "--conf", json.dumps(conf)], settings,
                           capture=True, extra_env=env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]  # one batch failed, so the run did
    assert "alphavantage: no data for symbol 'NOPE'" in output
    functions = [(q["function"], q["symbol"]) for q in fake.queries]
    assert functions.count(("TIME_SERIES_DAILY_ADJUSTED", "AVHX")) == 2  # throttled once, then served
    assert functions.count(("TIME_SERIES_DAILY_ADJUSTED", "NOPE")) == 1  # not retried
    key = "ohlcv/interval=1d/source=alphavantage/symbol=AVHX/month=1995-03/bars.csv"
    raw = pd.read_csv(s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"])
    assert raw["close"].tolist() == [price("AVHX", date(1995, 3, 1))]
    assert API_KEY not in output
