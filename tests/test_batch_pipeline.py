"""The batch lane on the real stack: backfill -> Spark transform -> Iceberg -> gate."""
from __future__ import annotations

import argparse
import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import talib

from ingestion.backfill import backfill
from ingestion.sources.synthetic import BAD_ROW_KINDS, SyntheticMarket
from spark_jobs import transform_bars
from tickerlake.core.names import Bucket, Table, quarantine_prefix, raw_ohlcv_key

pytestmark = pytest.mark.spark

SYMBOLS = ["AAA", "BBB"]
HISTORY = (date(2024, 6, 3), date(2025, 1, 2))  # about 150 sessions of lookback
DAY = date(2025, 1, 2)
MARKET = SyntheticMarket(seed=17)


def transform(spark, start: date, end: date, interval: str = "1d") -> dict:
    args = argparse.Namespace(start=start, end=end, interval=interval, source="synthetic",
                              lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS)
    return transform_bars.run(spark, args)


def fingerprint(frame) -> tuple[int, int]:
    """Row count and an order-independent checksum of every column."""
    row = frame.selectExpr("count(*) AS n", "coalesce(sum(xxhash64(*)), 0) AS h").first()
    return row["n"], row["h"]


@pytest.fixture(scope="module")
def lake(stack, settings, spark, s3):
    """History, then one day with every kind of bad row and a duplicated good row."""
    backfill(MARKET, SYMBOLS, *HISTORY, "1d", s3)
    history = transform(spark, *HISTORY)
    bad = MARKET.bad_rows("AAA", DAY, "1d")
    duplicate = MARKET.bars(["BBB"], DAY, date(2025, 1, 3), "1d")
    backfill(MARKET, SYMBOLS, DAY, date(2025, 1, 3), "1d", s3,
             extra_rows=pd.concat([bad, duplicate], ignore_index=True))
    day = transform(spark, DAY, date(2025, 1, 3))
    return {"history": history, "day": day, "bad": bad}


def test_history_lands_in_iceberg_only(lake, spark, settings, s3):
    sessions = len(MARKET.bars(["AAA"], *HISTORY, "1d"))
    assert lake["history"]["rows"] == sessions * len(SYMBOLS)
    assert lake["history"]["quarantined"] == 0
    ours = f"date < DATE'{DAY}' AND symbol IN ('AAA', 'BBB')"  # other tests write other symbols
    iceberg = spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}")
    assert iceberg.where(ours).count() == sessions * len(SYMBOLS)
    # the first load was one append (its count from the commit), and there is no Parquet copy
    assert lake["history"]["iceberg_upserted"] == sessions * len(SYMBOLS)
    assert not s3.list_objects_v2(Bucket=Bucket.PROCESSED.value, Prefix="bars/", MaxKeys=1).get("Contents")


def test_spark_output_equals_talib_including_the_incremental_day(lake, spark, settings):
    """Through Spark end to end: the history run and the next day's run (which continues from
    the Iceberg lookback) both equal TA-Lib over the whole series."""
    truth = MARKET.bars(["AAA"], HISTORY[0], date(2025, 1, 3), "1d")
    c, h, low = (truth[k].to_numpy() for k in ("close", "high", "low"))
    macd, signal, _ = talib.MACD(c, 12, 26, 9)
    reference = {"sma_50": talib.SMA(c, 50), "ema_26": talib.EMA(c, 26), "rsi_14": talib.RSI(c, 14),
                 "atr_14": talib.ATR(h, low, c, 14), "macd": macd, "macd_signal": signal}
    out = (spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}").where("symbol = 'AAA'")
           .orderBy("timestamp").toPandas())
    assert len(out) == len(truth)
    for column, expected in reference.items():
        actual = out[column].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(actual), np.isnan(expected)), column
        assert np.nanmax(np.abs(actual - expected)) <= 1e-9, column


def test_bad_rows_land_in_quarantine_with_reasons_and_nowhere_else(lake, spark, settings):
    assert lake["day"]["quarantined"] == len(BAD_ROW_KINDS)
    quarantine = spark.read.parquet(Bucket.PROCESSED.s3a(quarantine_prefix("1d"))).where(
        "source_file LIKE '%/source=synthetic/%'").toPandas()  # the CSV fuzz test files its own
    assert sorted(quarantine["reason"]) == sorted(BAD_ROW_KINDS.values())
    assert set(quarantine["source_file"].str.rsplit("/", n=3).str[-3]) == {"symbol=AAA"}
    bad_stamps = {t for t in lake["bad"]["timestamp"].dropna()}
    day = spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}").where(f"date = DATE'{DAY}'").toPandas()
    assert sorted(day["symbol"]) == SYMBOLS  # one good bar each: no bad row, no duplicate
    assert not set(pd.to_datetime(day["timestamp"], utc=True)) & bad_stamps


def test_duplicates_are_dropped(lake):
    assert lake["day"]["duplicates_dropped"] == 1


def test_rerunning_an_interval_changes_nothing(lake, spark, settings, s3):
    table = f"{settings.iceberg.catalog}.{Table.BARS_1D.value}"
    anomalies = f"{settings.iceberg.catalog}.{Table.ANOMALIES.value}"

    def state():
        snapshots = [spark.sql(f"SELECT snapshot_id FROM {t}.snapshots").count() for t in (table, anomalies)]
        return (fingerprint(spark.table(table)),
                fingerprint(spark.table(anomalies)),
                fingerprint(spark.read.parquet(Bucket.PROCESSED.s3a(quarantine_prefix("1d")))), snapshots)

    before = state()
    again = transform(spark, DAY, date(2025, 1, 3))
    assert (again["iceberg_upserted"], again["iceberg_deleted"], again["anomalies_upserted"]) == (0, 0, 0)
    assert again["rows"] == lake["day"]["rows"] and again["quarantined"] == lake["day"]["quarantined"]
    assert state() == before


def test_a_row_removed_from_raw_is_removed_from_iceberg_on_rerun(lake, spark, settings, s3):
    """The interval's raw data is the truth: no stale row survives a rerun."""
    key = raw_ohlcv_key("1d", "synthetic", "BBB", DAY.isoformat())
    body = s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"].read()
    try:
        s3.delete_object(Bucket=Bucket.RAW.value, Key=key)
        summary = transform(spark, DAY, date(2025, 1, 3))
        assert summary["iceberg_deleted"] == 1
        rows = spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}").where(f"date = DATE'{DAY}'")
        assert [r.symbol for r in rows.collect()] == ["AAA"]
    finally:
        s3.put_object(Bucket=Bucket.RAW.value, Key=key, Body=body)
        transform(spark, DAY, date(2025, 1, 3))


def test_the_gate_validates_the_snapshot_its_transform_committed_not_a_later_one(lake, spark, settings, s3):
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import transform_result_key
    from tickerlake.quality import run_gate

    end = date(2025, 1, 3)
    day = transform(spark, DAY, end)  # the interval's transform, as its DAG runs it before the gate
    key = transform_result_key("1d", DAY.isoformat(), end.isoformat())
    recorded = json.loads(s3.get_object(Bucket=Bucket.PROCESSED.value, Key=key)["Body"].read())
    assert recorded["bars_snapshot"] == day["bars_snapshot"] is not None
    assert recorded["rows"] == day["rows"]
    # a later commit to the table: another interval's transform (a day of its own, after DAY)
    later_day = date(2025, 3, 3)
    backfill(MARKET, SYMBOLS, later_day, later_day + timedelta(days=1), "1d", s3)
    transform(spark, later_day, later_day + timedelta(days=1))
    table = iceberg_catalog(settings).load_table(str(Table.BARS_1D))
    assert table.current_snapshot().snapshot_id != recorded["bars_snapshot"]
    result = run_gate("1d", DAY, end, settings)
    assert result.details["snapshot_id"] == recorded["bars_snapshot"]  # the transform's, not the current one
    assert result.success and result.rows == len(SYMBOLS)


def test_minute_bars_flow_through_the_same_transform(stack, spark, settings, s3):
    backfill(MARKET, ["AAA"], date(2025, 3, 3), date(2025, 3, 5), "1m", s3)
    summary = transform(spark, date(2025, 3, 3), date(2025, 3, 5), "1m")
    assert summary["rows"] == 2 * 390 and summary["quarantined"] == 0
    out = spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1M.value}").orderBy("timestamp").toPandas()
    expected = talib.EMA(MARKET.bars(["AAA"], date(2025, 3, 3), date(2025, 3, 5), "1m")["close"].to_numpy(), 26)
    assert np.nanmax(np.abs(out["ema_26"].to_numpy(dtype=float) - expected)) <= 1e-9


# --- through Airflow -------------------------------------------------------------------------

def _dags_test(settings, dag_id: str, logical_date: str, conf: dict | None = None):
    from minio_init.warehouse import ensure_databases
    from tickerlake.dev.airflow_local import run_airflow

    ensure_databases(settings.pg)
    args = ["dags", "test", dag_id, logical_date]
    if conf:
        args += ["--conf", json.dumps(conf)]
    done = run_airflow(args, settings, capture=True)
    return done.returncode, done.stdout + done.stderr


def test_backfill_dag_is_keyed_on_the_data_interval(stack, settings, s3):
    """`dags test` for 2025-02-05 covers the interval [2025-02-04, 2025-02-05): the keys carry the
    interval's session date, and a rerun writes the same bytes to the same keys."""
    code, output = _dags_test(settings, "ohlcv_backfill", "2025-02-05")
    assert code == 0, output[-3000:]
    keys = {raw_ohlcv_key("1d", "synthetic", s, "2025-02-04") for s in ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")}
    assert all("/month=2025-02/" in k for k in keys)  # daily bars: one object per symbol and month
    etags = {k: s3.head_object(Bucket=Bucket.RAW.value, Key=k)["ETag"] for k in keys}
    listed = s3.list_objects_v2(Bucket=Bucket.RAW.value, Prefix="ohlcv/interval=1d/source=synthetic/symbol=AAPL/")
    assert {o["Key"] for o in listed["Contents"]} & keys == {k for k in keys if "AAPL" in k}
    aapl = s3.get_object(Bucket=Bucket.RAW.value, Key=raw_ohlcv_key("1d", "synthetic", "AAPL", "2025-02-04"))
    days = {line.split(",")[1][:10] for line in aapl["Body"].read().decode().splitlines()[1:]}
    assert "2025-02-04" in days and "2025-02-05" not in days  # the interval's session, not the run's date
    code, output = _dags_test(settings, "ohlcv_backfill", "2025-02-05")
    assert code == 0, output[-3000:]
    assert {k: s3.head_object(Bucket=Bucket.RAW.value, Key=k)["ETag"] for k in keys} == etags


def test_backfill_then_transform_dags_succeed(stack, settings, spark, monitoring):
    """(With Alertmanager up: the DAG's last task sends the anomaly alerts.)"""
    conf = {"start": "2025-02-10", "end": "2025-02-12", "symbols": ["AAA", "BBB"]}
    code, output = _dags_test(settings, "ohlcv_backfill", "2025-02-12", conf)
    assert code == 0, output[-3000:]
    code, output = _dags_test(settings, "ohlcv_transform", "2025-02-12",
                              {"start": "2025-02-10", "end": "2025-02-12"})
    assert code == 0, output[-3000:]
    assert "TRANSFORM_SUMMARY" in output
    rows = spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D.value}") \
        .where("date >= DATE'2025-02-10' AND date < DATE'2025-02-12'").count()
    assert rows == 2 * 2


def test_a_failed_expectation_fails_the_transform_dag(stack, settings, s3):
    """A session missing from raw (a gap for every symbol) passes the transform but fails the
    gate's calendar freshness check, and the DAG run fails; the result is stored in the lake."""
    gappy = SyntheticMarket(seed=17, gaps=[(s, date(2025, 2, 19)) for s in SYMBOLS])
    backfill(gappy, SYMBOLS, date(2025, 2, 18), date(2025, 2, 21), "1d", s3)
    code, output = _dags_test(settings, "ohlcv_transform", "2025-02-21",
                              {"start": "2025-02-18", "end": "2025-02-21"})
    assert code != 0
    assert "quality gate failed" in output
    assert "expect_column_distinct_values_to_contain_set(date_text)" in output
    stored = s3.get_object(Bucket=Bucket.PROCESSED.value,
                           Key="quality/bars/interval=1d/start=2025-02-18_end=2025-02-21.json")
    assert json.loads(stored["Body"].read())["success"] is False


def test_another_source_on_the_same_dates_leaves_the_first_sources_bars_alone(lake, spark, settings, s3):
    """A transform owns the bars and anomalies of the symbols it read in its interval: another
    source's run for other symbols on the same day must not delete the first one's rows."""
    from dataclasses import dataclass, field

    from ingestion.sources.base import SourceName

    @dataclass
    class OtherSource(SyntheticMarket):  # synthetic bars as another source's
        name: SourceName = field(default=SourceName.CSV, init=False)

        def bars(self, *args, **kwargs):
            return super().bars(*args, **kwargs).assign(source=self.name.value)

    bars = f"{settings.iceberg.catalog}.{Table.BARS_1D.value}"
    anomalies = f"{settings.iceberg.catalog}.{Table.ANOMALIES.value}"
    day, ours = f"date = DATE'{DAY}'", "symbol IN ('AAA', 'BBB')"
    first = fingerprint(spark.table(bars).where(f"{day} AND {ours}"))
    first_anomalies = fingerprint(spark.table(anomalies).where(f"{day} AND {ours}"))
    assert first[0] == len(SYMBOLS)

    backfill(OtherSource(seed=41), ["CCC"], DAY, DAY + timedelta(days=1), "1d", s3)
    summary = transform_bars.run(spark, argparse.Namespace(
        start=DAY, end=DAY + timedelta(days=1), interval="1d", source=SourceName.CSV.value,
        lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS))

    assert summary["rows"] == 1 and summary["iceberg_deleted"] == 0
    assert fingerprint(spark.table(bars).where(f"{day} AND {ours}")) == first
    assert fingerprint(spark.table(anomalies).where(f"{day} AND {ours}")) == first_anomalies
    assert spark.table(bars).where(f"{day} AND symbol = 'CCC'").count() == 1


def test_the_processed_tables_get_small_parquet_dictionaries_once_also_on_an_older_lake(lake, spark, settings):
    name = f"{settings.iceberg.catalog}.{Table.BARS_1D.value}"

    def properties() -> dict[str, str]:
        return {row["key"]: row["value"] for row in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}

    def metadata_versions() -> int:
        return spark.sql(f"SELECT count(*) AS n FROM {name}.metadata_log_entries").first()["n"]

    assert properties()["write.parquet.dict-size-bytes"] == "8192"
    spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES ('write.parquet.dict-size-bytes')")  # an older lake's
    transform_bars.ensure_tables(spark, "1d")
    assert properties()["write.parquet.dict-size-bytes"] == "8192"
    versions = metadata_versions()
    transform_bars.ensure_tables(spark, "1d")
    assert metadata_versions() == versions  # already set: no commit


def test_symbols_are_spread_over_the_cores_by_their_bytes_one_partition_each(spark):
    from pyspark.sql import functions as F

    sizes = {"BIG": 900, "MID": 500, "SMALL1": 300, "SMALL2": 200, "TINY": 100}
    objects = {f"ohlcv/interval=1m/source=s/symbol={symbol}/month=2026-0{m}/bars.csv": size // 2
               for symbol, size in sizes.items() for m in (1, 2)}
    parts = transform_bars.balanced_parts(spark, objects)
    cores = spark.sparkContext.defaultParallelism
    assert set(parts) == set(sizes) and len(set(parts.values())) == min(cores, len(sizes))
    placed = (spark.createDataFrame(list(parts.items()), "symbol STRING, part BIGINT")
              .repartition(len(set(parts.values())), "part")
              .select("symbol", "part", F.spark_partition_id().alias("partition")).collect())
    # Spark's hash partitioning puts each part value in a partition of its own
    assert len({row.partition for row in placed}) == len({row.part for row in placed})
    load: dict[int, int] = {}
    for symbol, part in parts.items():
        load[part] = load.get(part, 0) + sizes[symbol]
    assert max(load.values()) - min(load.values()) <= max(sizes.values())  # largest first, to the least loaded
