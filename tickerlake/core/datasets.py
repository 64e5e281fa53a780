"""Every dataset of the lake and the warehouse, declared once: columns, types, keys, partitioning.

Everything else derives from these declarations: the Spark DDL of the Iceberg tables and of
`applyInPandas` (`Dataset.spark_ddl`), Arrow schemas (`Dataset.arrow_schema`), the warehouse's
column lists (tickerlake/warehouse/datasets.py), the quality suite's column set
(tickerlake/quality.py). The SQL DDL in sql/postgres and sql/snowflake is checked against them by
tests/test_datasets.py, which fails on any disagreement.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from tickerlake.core.names import Table


class BarInterval(StrEnum):
    """Bar sizes the batch lane handles."""

    DAILY = "1d"
    MINUTE = "1m"


class Kind(StrEnum):
    """Logical column types; Spark, Arrow and each warehouse map them to their own."""

    TEXT = "text"
    TIMESTAMP = "timestamp"  # an instant, UTC (Spark TIMESTAMP, timestamptz, TIMESTAMP_TZ)
    DATE = "date"
    DOUBLE = "double"
    BIGINT = "bigint"
    INT = "int"
    BOOL = "bool"


SPARK_TYPES = {Kind.TEXT: "STRING", Kind.TIMESTAMP: "TIMESTAMP", Kind.DATE: "DATE", Kind.DOUBLE: "DOUBLE",
               Kind.BIGINT: "BIGINT", Kind.INT: "INT", Kind.BOOL: "BOOLEAN"}
ARROW_TYPES = {Kind.TEXT: pa.string(), Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"), Kind.DATE: pa.date32(),
               Kind.DOUBLE: pa.float64(), Kind.BIGINT: pa.int64(), Kind.INT: pa.int32(), Kind.BOOL: pa.bool_()}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = True


@dataclass(frozen=True)
class Dataset:
    """One dataset: its columns in order, its key, and the columns it is partitioned by."""

    name: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    partitioned_by: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()  # the Iceberg tables holding it, if any

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name}: a column is declared twice")
        unknown = [k for k in (*self.keys, *self.partitioned_by) if k not in names]
        if unknown:
            raise ValueError(f"dataset {self.name}: key/partition column(s) {unknown} are not columns")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"dataset {self.name} has no column {name!r}")

    def file_columns(self) -> tuple[Column, ...]:
        """The columns stored inside the data files (hive partition columns live in the path)."""
        return tuple(c for c in self.columns if c.name not in self.partitioned_by)

    def spark_ddl(self, *, as_text: bool = False) -> str:
        """Spark DDL of the columns (`as_text`: every column STRING, for reading raw text)."""
        return ", ".join(f"`{c.name}` {'STRING' if as_text else SPARK_TYPES[c.kind]}" for c in self.columns)

    def spark_partitioning(self) -> str:
        return ", ".join(f"`{c}`" for c in self.partitioned_by)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.kind], nullable=c.nullable) for c in self.columns])


def _doubles(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, Kind.DOUBLE) for n in names)


# Raw OHLCV bars, as every source returns them and as they land (CSV) in the raw bucket: one object
# per (interval, source, symbol, month), see names.raw_ohlcv_key.
OHLCV = Dataset(
    name="raw_ohlcv",
    columns=(
        Column("symbol", Kind.TEXT, nullable=False),
        Column("timestamp", Kind.TIMESTAMP, nullable=False),  # bar open time
        *_doubles("open", "high", "low", "close"),
        Column("adj_close", Kind.DOUBLE),  # split- and dividend-adjusted close
        Column("volume", Kind.BIGINT),
        Column("dividends", Kind.DOUBLE),  # cash dividend paid that day (0 if none)
        Column("stock_splits", Kind.DOUBLE),  # split ratio that day (0 if none)
        Column("source", Kind.TEXT, nullable=False),
    ),
    keys=("symbol", "timestamp"),
)
OHLCV_COLUMNS = OHLCV.column_names

# Indicator columns the transform adds, in output order (spark_jobs/indicators.py).
INDICATORS = (
    *_doubles("return_simple", "return_log", "sma_20", "sma_50", "ema_12", "ema_26",
              "macd", "macd_signal", "macd_hist", "rsi_14", "bb_upper", "bb_middle", "bb_lower",
              "atr_14", "vwap", "volatility_20", "return_zscore", "volume_ratio"),
    Column("is_return_anomaly", Kind.BOOL), Column("is_volume_spike", Kind.BOOL),
)
INDICATOR_COLUMNS = [c.name for c in INDICATORS]

# Processed bars with indicators: one Iceberg table per interval, the date is the session date.
BARS = Dataset(
    name="bars",
    columns=(*OHLCV.columns, Column("date", Kind.DATE, nullable=False), *INDICATORS),
    keys=("symbol", "timestamp"),
    partitioned_by=("date",),
    tables=(Table.BARS_1D, Table.BARS_1M),
)

ANOMALIES = Dataset(
    name="anomalies",
    columns=(
        Column("symbol", Kind.TEXT, nullable=False), Column("timestamp", Kind.TIMESTAMP, nullable=False),
        Column("interval", Kind.TEXT, nullable=False),
        Column("kind", Kind.TEXT, nullable=False),  # return_zscore | volume_spike
        Column("date", Kind.DATE, nullable=False),
        *_doubles("close", "return_simple", "return_zscore"), Column("volume", Kind.BIGINT),
        Column("volume_ratio", Kind.DOUBLE),
    ),
    keys=("symbol", "timestamp", "interval", "kind"),
    partitioned_by=("interval", "date"),
    tables=(Table.ANOMALIES,),
)

def _raw_rows(name: str, note: str, during: str) -> Dataset:
    """Raw OHLCV rows set aside by the transform: every raw column as text as it arrived, a note
    on what was done (`note`), the object they came from, and the interval that did it."""
    return Dataset(
        name=name,
        columns=(*(Column(c.name, Kind.TEXT) for c in OHLCV.columns),
                 Column(note, Kind.TEXT, nullable=False), Column("source_file", Kind.TEXT),
                 Column("date", Kind.DATE), Column(during, Kind.TEXT)),
        keys=("source_file", "symbol", "timestamp"),
        partitioned_by=("date",),
    )


# Raw rows the transform rejected, with the reason.
QUARANTINE_OHLCV = _raw_rows("quarantine_ohlcv", "reason", "quarantined_for")
# Raw rows kept with a repair (open or close slightly outside [low, high]: the range widened),
# with what was changed.
REPAIRED_OHLCV = _raw_rows("repaired_ohlcv", "repair", "repaired_for")

# Quote/trade events on the ticks topic (JSON, keyed by symbol), as the producer sends them.
TICK_EVENT = Dataset(
    name="tick_event",
    columns=(
        Column("event_id", Kind.TEXT, nullable=False),  # unique per event: the dedup key
        Column("event_time", Kind.TIMESTAMP, nullable=False),
        Column("symbol", Kind.TEXT, nullable=False),
        Column("price", Kind.DOUBLE, nullable=False),
        Column("size", Kind.BIGINT, nullable=False),
        Column("bid", Kind.DOUBLE), Column("ask", Kind.DOUBLE),
        Column("source", Kind.TEXT, nullable=False),
    ),
    keys=("event_id",),
)

# Valid events as the stream stores them (UTC date and hour of the event), with where they came
# from in the topic.
TICKS = Dataset(
    name="ticks",
    columns=(*TICK_EVENT.columns, Column("date", Kind.DATE, nullable=False),
             Column("kafka_partition", Kind.INT), Column("kafka_offset", Kind.BIGINT),
             Column("hour", Kind.INT, nullable=False)),
    keys=("event_id",),
    partitioned_by=("date", "hour"),
    tables=(Table.TICKS,),
)

# Malformed and too-late events, with the reason and the micro-batch that read them.
QUARANTINE_TICKS = Dataset(
    name="quarantine_ticks",
    columns=(Column("kafka_partition", Kind.INT), Column("kafka_offset", Kind.BIGINT),
             Column("value", Kind.TEXT), Column("reason", Kind.TEXT, nullable=False),
             Column("batch_id", Kind.BIGINT, nullable=False)),
    keys=("kafka_partition", "kafka_offset"),
    tables=(Table.QUARANTINE_TICKS,),
)

# The stream's 1- and 5-minute bars.
LIVE_BARS = Dataset(
    name="live_bars",
    columns=(
        Column("symbol", Kind.TEXT, nullable=False),
        Column("window_start", Kind.TIMESTAMP, nullable=False), Column("window_end", Kind.TIMESTAMP),
        *_doubles("open", "high", "low", "close"), Column("volume", Kind.BIGINT), Column("vwap", Kind.DOUBLE),
        Column("trades", Kind.BIGINT), Column("date", Kind.DATE, nullable=False),
    ),
    keys=("symbol", "window_start"),
    partitioned_by=("date",),
    tables=(Table.LIVE_BARS_1M, Table.LIVE_BARS_5M),
)

# The warehouse's load ledger: every lake object loaded, so a rerun loads nothing twice.
LOAD_LEDGER = Dataset(
    name="load_ledger",
    columns=(
        Column("dataset", Kind.TEXT, nullable=False),  # the warehouse dataset's name
        Column("lake_partition", Kind.TEXT, nullable=False),  # e.g. date=2026-01-02
        Column("bucket", Kind.TEXT, nullable=False), Column("object_key", Kind.TEXT, nullable=False),
        Column("etag", Kind.TEXT, nullable=False), Column("row_count", Kind.BIGINT, nullable=False),
        Column("target", Kind.TEXT, nullable=False),  # the warehouse table
        Column("loaded_at", Kind.TIMESTAMP, nullable=False),
        # The object's key checksum as the load read it (sums of two 24-bit slices of each key's
        # MD5, computed by SQL: tickerlake.warehouse.checksums); NULL in rows of older loads.
        Column("key_sum_hi", Kind.BIGINT), Column("key_sum_lo", Kind.BIGINT),
        Column("checked_at", Kind.TIMESTAMP),  # when the consistency check last verified it
    ),
    keys=("dataset", "bucket", "object_key"),
)

# The Iceberg snapshot each warehouse dataset was last loaded to in full: a load that finds the
# table still at that snapshot has nothing to do (it reads no manifest and no ledger).
LOAD_STATE = Dataset(
    name="load_state",
    columns=(Column("dataset", Kind.TEXT, nullable=False), Column("snapshot_id", Kind.BIGINT, nullable=False),
             Column("loaded_at", Kind.TIMESTAMP, nullable=False)),
    keys=("dataset",),
)

# The warehouse's symbol dimension: one row per instrument the lake has seen.
DIM_SYMBOL = Dataset(
    name="dim_symbol",
    columns=(Column("symbol", Kind.TEXT, nullable=False), Column("name", Kind.TEXT),
             Column("exchange", Kind.TEXT), Column("currency", Kind.TEXT, nullable=False),
             Column("first_seen", Kind.TIMESTAMP, nullable=False),
             Column("updated_at", Kind.TIMESTAMP, nullable=False)),
    keys=("symbol",),
)

ALL_DATASETS = (OHLCV, BARS, ANOMALIES, QUARANTINE_OHLCV, REPAIRED_OHLCV, TICK_EVENT, TICKS, QUARANTINE_TICKS,
                LIVE_BARS, LOAD_LEDGER, LOAD_STATE, DIM_SYMBOL)


def dataset_of(table: Table) -> Dataset:
    """The declaration behind an Iceberg table."""
    for dataset in ALL_DATASETS:
        if table in dataset.tables:
            return dataset
    raise KeyError(f"no dataset declares the table {table}")
