"""Everything the dashboard reads, as parameterised queries.

The warehouse and Airflow's run history are read as the analyst role (granted SELECT only: the
database refuses any write). What the warehouse does not hold (the live bars of the running
stream, the stream's progress, the lake's quarantine) is read from the lake, read-only.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from tickerlake.core.settings import Settings

INDICATORS = ("sma_20", "sma_50", "ema_12", "ema_26", "bb_upper", "bb_middle", "bb_lower", "rsi_14",
              "macd", "macd_signal", "macd_hist")


class NoData(LookupError):
    """The warehouse has nothing to show yet; the message says what to run."""


def _frame(settings: Settings, query: str, params: tuple = (), *, dbname: str | None = None) -> pd.DataFrame:
    import psycopg

    from tickerlake.core.clients import pg_connect

    try:
        with pg_connect(settings.pg, as_analyst=True, dbname=dbname) as conn:
            conn.read_only = True
            cursor = conn.execute(query, params)
            columns = [c.name for c in cursor.description or ()]
            return pd.DataFrame(cursor.fetchall(), columns=columns)
    except psycopg.errors.UndefinedTable as exc:
        raise NoData(f"not loaded yet ({exc.diag.message_primary}): run `make demo` or the "
                     "warehouse_load DAG") from None


def symbols(settings: Settings) -> list[str]:
    frame = _frame(settings, "SELECT DISTINCT symbol FROM warehouse.bars_daily "
                             "UNION SELECT DISTINCT symbol FROM warehouse.bars_intraday ORDER BY 1")
    return frame["symbol"].tolist()


def date_span(settings: Settings, symbol: str, interval: str) -> tuple[date, date] | None:
    if interval == "1d":
        frame = _frame(settings, "SELECT min(date) AS lo, max(date) AS hi FROM warehouse.bars_daily "
                                 "WHERE symbol = %s", (symbol,))
    else:
        frame = _frame(settings, "SELECT min(date) AS lo, max(date) AS hi FROM warehouse.bars_intraday "
                                 "WHERE symbol = %s AND bar_interval = %s AND origin = 'history'",
                       (symbol, interval))
    lo, hi = frame.iloc[0]["lo"], frame.iloc[0]["hi"]
    return (lo, hi) if lo is not None else None


def bars(settings: Settings, symbol: str, interval: str, start: date, end: date) -> pd.DataFrame:
    """Bars in [start, end] (session dates), with the indicators where the interval has them."""
    if interval == "1d":
        return _frame(settings, "SELECT ts, open, high, low, close, volume, " + ", ".join(INDICATORS)
                      + " FROM warehouse.bars_daily WHERE symbol = %s AND date BETWEEN %s AND %s ORDER BY ts",
                      (symbol, start, end))
    return _frame(settings, "SELECT ts, open, high, low, close, volume FROM warehouse.bars_intraday "
                            "WHERE symbol = %s AND bar_interval = %s AND origin = 'history' "
                            "AND date BETWEEN %s AND %s ORDER BY ts", (symbol, interval, start, end))


def anomalies(settings: Settings, symbol: str, interval: str, start: date, end: date) -> pd.DataFrame:
    return _frame(settings, "SELECT ts, kind, close, return_zscore, volume_ratio FROM warehouse.anomalies "
                            "WHERE symbol = %s AND bar_interval = %s AND date BETWEEN %s AND %s ORDER BY ts",
                  (symbol, interval, start, end))


@dataclass(frozen=True)
class Freshness:
    dataset: str
    latest: date | None
    sessions_behind: int | None  # None: no data, or not a per-session dataset


def freshness(settings: Settings) -> list[Freshness]:
    from tickerlake.core.market import sessions_behind

    frame = _frame(settings, """
        SELECT 'bars_daily' AS dataset, max(date) AS latest FROM warehouse.bars_daily
        UNION ALL SELECT 'bars_intraday (history)', max(date) FROM warehouse.bars_intraday WHERE origin = 'history'
        UNION ALL SELECT 'bars_intraday (stream)', max(date) FROM warehouse.bars_intraday WHERE origin = 'stream'
        UNION ALL SELECT 'ticks', max(date) FROM warehouse.ticks""")
    out = []
    for dataset, latest in zip(frame["dataset"].tolist(), frame["latest"].tolist()):
        per_session = not str(dataset).startswith(("ticks", "bars_intraday (stream)"))
        behind = sessions_behind(latest) if per_session and latest is not None else None
        out.append(Freshness(str(dataset), latest, behind))
    return out


def dag_runs(settings: Settings, limit: int = 5) -> pd.DataFrame:
    """The last runs of each DAG, from Airflow's metadata database (its analyst view)."""
    return _frame(settings, """
        SELECT dag_id, is_paused, run_id, run_type, state, logical_date, start_date, end_date FROM (
            SELECT *, row_number() OVER (PARTITION BY dag_id ORDER BY start_date DESC NULLS LAST) AS n
            FROM public.tickerlake_dag_runs) r
        WHERE n <= %s ORDER BY dag_id, start_date DESC NULLS LAST""", (limit,),
                  dbname=settings.pg.airflow_database)


def load_ledger(settings: Settings) -> pd.DataFrame:
    return _frame(settings, "SELECT dataset, target, count(*) AS objects, sum(row_count) AS rows, "
                            "max(loaded_at) AS last_loaded FROM warehouse.load_ledger "
                            "GROUP BY dataset, target ORDER BY dataset")


def quarantine_reasons(settings: Settings) -> pd.DataFrame:
    """Quarantined rows by dataset and reason: the batch lane's Parquet and the stream's table."""
    import pyarrow.dataset as ds

    from tickerlake.core.clients import arrow_s3_filesystem
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import QUARANTINE_OHLCV_PREFIX, Bucket, Table

    rows = []
    filesystem = arrow_s3_filesystem(settings.s3)
    try:
        batch = ds.dataset(f"{Bucket.PROCESSED.value}/{QUARANTINE_OHLCV_PREFIX}", filesystem=filesystem,
                           format="parquet", partitioning="hive").to_table(columns=["interval", "reason"])
        for item in batch.group_by(["interval", "reason"]).aggregate([("reason", "count")]).to_pylist():
            rows.append({"dataset": f"ohlcv {item['interval']}", "reason": item["reason"],
                         "rows": item["reason_count"]})
    except (FileNotFoundError, OSError):
        pass  # nothing quarantined yet
    catalog = iceberg_catalog(settings)
    if catalog.table_exists(Table.QUARANTINE_TICKS.value):
        ticks = catalog.load_table(Table.QUARANTINE_TICKS.value).scan(selected_fields=("reason",)).to_arrow()
        for item in ticks.group_by("reason").aggregate([("reason", "count")]).to_pylist():
            rows.append({"dataset": "ticks", "reason": item["reason"], "rows": item["reason_count"]})
    return pd.DataFrame(rows, columns=["dataset", "reason", "rows"])


def live_bars(settings: Settings, symbol: str, limit: int = 120) -> pd.DataFrame:
    """The stream's latest 1-minute bars of a symbol (realtime.bars_1m, today's partition)."""
    from datetime import UTC, datetime

    from pyiceberg.expressions import And, EqualTo

    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import Table

    catalog = iceberg_catalog(settings)
    if not catalog.table_exists(Table.LIVE_BARS_1M.value):
        return pd.DataFrame()
    today = datetime.now(UTC).date().isoformat()
    frame = catalog.load_table(Table.LIVE_BARS_1M.value).scan(
        row_filter=And(EqualTo("symbol", symbol), EqualTo("date", today))).to_pandas()  # type: ignore[call-arg,arg-type]
    return frame.sort_values("window_start").tail(limit) if len(frame) else frame


def live_symbols(settings: Settings) -> list[str]:
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import Table

    catalog = iceberg_catalog(settings)
    if not catalog.table_exists(Table.LIVE_BARS_1M.value):
        return []
    frame = catalog.load_table(Table.LIVE_BARS_1M.value).scan(selected_fields=("symbol",)).to_arrow()
    return sorted(set(frame.column("symbol").to_pylist()))


def stream_status(settings: Settings) -> dict:
    """The stream's events/s, lag per partition and last commit, from the job's progress file."""
    from tickerlake.core.clients import s3_client
    from tickerlake.core.stream_progress import TICKS_QUERY, kafka_lag, kafka_source_positions, read_progress

    progress = read_progress(s3_client(settings.s3))
    if progress is None:
        return {}
    ticks = (progress.get("queries") or {}).get(TICKS_QUERY) or {}
    try:
        lag = kafka_lag(settings, kafka_source_positions(progress))
    except Exception:  # noqa: BLE001 - the broker may be down; show the rest
        lag = {}
    return {"written_at": progress.get("written_at"), "events_per_second": ticks.get("processedRowsPerSecond"),
            "lag": lag, "counters": progress.get("counters") or {}}
