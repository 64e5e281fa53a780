"""`airflow dags test warehouse_load` on the test stack: the lake's processed and realtime data
into the Postgres warehouse, idempotently, with the consistency check as the last task."""
from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime

import pyarrow.parquet as pq

from tickerlake.warehouse.datasets import Datasets, list_partitions
from tickerlake.warehouse.postgres import PostgresWarehouse

DAY = date(1899, 12, 29)  # a date no other test writes


def _put_bars(spark, settings, symbols: list[str], close: float) -> None:
    """The day's bars in `processed.bars_1d` as a transform (re)run leaves them: the day's
    partition replaced in one commit (indicators NULL: the load does not care)."""
    from spark_jobs.transform_bars import ensure_tables
    from tickerlake.core.datasets import BARS

    table, _ = ensure_tables(spark, "1d")
    ts = datetime(DAY.year, DAY.month, DAY.day, 14, 30, tzinfo=UTC)
    given = [{"symbol": s, "timestamp": ts, "open": close, "high": close, "low": close, "close": close,
              "volume": 1, "source": "test", "date": DAY} for s in symbols]
    rows = [tuple(row.get(c) for c in BARS.column_names) for row in given]  # the rest NULL
    frame = spark.createDataFrame(rows, schema=BARS.spark_ddl())
    spark.sql(f"DELETE FROM {table} WHERE date = DATE'{DAY}'")
    frame.writeTo(table).append()


def _run(settings, when: str) -> str:
    from tickerlake.dev.airflow_local import run_airflow

    done = run_airflow(["dags", "test", "warehouse_load", when], settings, capture=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "consistent: {'partitions'" in output
    return output


def _loaded(output: str) -> dict[str, int]:
    """dataset -> partitions loaded, from the load tasks' report lines."""
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^(\w+)\s+-> \w+\s+loaded (\d+) partition", output, re.MULTILINE)}


def test_the_load_dag_loads_once_and_reloads_a_replaced_object_once(stack, settings, s3, spark):
    from minio_init.warehouse import ensure_databases

    ensure_databases(settings.pg)
    _put_bars(spark, settings, ["AAA", "BBB", "CCC"], close=10.0)
    first = _loaded(_run(settings, "2026-11-20T00:00:00+00:00"))
    assert set(first) == {d.name for d in Datasets.all()}
    assert first["bars_daily"] >= 1
    with PostgresWarehouse(settings.pg) as wh:
        counts = {t: wh.count(t) for t in ("bars_daily", "bars_intraday", "anomalies", "ticks")}
        assert counts["bars_daily"] >= 3
        # Whatever the streaming tests left in the lake (the Spark file sink's committed files) is
        # exactly what the warehouse holds: every committed tick once, no partition missed.
        lake_ticks = list_partitions(s3, Datasets.TICKS.value)
        lake_rows = sum(pq.ParquetFile(io.BytesIO(s3.get_object(Bucket=o.bucket, Key=o.key)["Body"].read()))
                        .metadata.num_rows for objects in lake_ticks.values() for o in objects)
        days = sorted({p.split("/")[0].removeprefix("date=") for p in lake_ticks})
        stream_rows = wh.query("SELECT COUNT(*) FROM warehouse.ticks WHERE CAST(date AS TEXT) IN "
                               f"({', '.join('?' for _ in days)})", tuple(days))[0][0] if days else 0
        assert stream_rows == lake_rows  # (other tests' own tick rows live on dates of their own)
        assert first["ticks"] == len(lake_ticks)

    second = _loaded(_run(settings, "2026-11-20T00:15:00+00:00"))
    assert set(second.values()) == {0}
    with PostgresWarehouse(settings.pg) as wh:
        assert {t: wh.count(t) for t in counts} == counts

    _put_bars(spark, settings, ["AAA", "BBB"], close=11.0)  # the transform reran that day: one symbol fewer
    third = _loaded(_run(settings, "2026-11-20T00:30:00+00:00"))
    assert third["bars_daily"] == 1 and sum(third.values()) == 1
    with PostgresWarehouse(settings.pg) as wh:
        rows = wh.query("SELECT symbol, close FROM warehouse.bars_daily WHERE date = CAST(? AS DATE) "
                        "ORDER BY symbol", (str(DAY),))
    assert rows == [("AAA", 11.0), ("BBB", 11.0)]
