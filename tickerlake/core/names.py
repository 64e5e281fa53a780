"""Bucket, topic, namespace and table names: the one place they are spelled."""
from __future__ import annotations

from enum import StrEnum


class Bucket(StrEnum):
    """The lake's three buckets (layers)."""

    RAW = "raw"  # source data as landed: CSV backfills, the stream's record archive
    REALTIME = "realtime"  # the streaming job's Iceberg tables
    PROCESSED = "processed"  # cleaned data, indicators, anomalies, quarantine

    def s3a(self, *parts: str) -> str:
        """An s3a:// URI for Spark (Hadoop S3A) below this bucket."""
        return "/".join([f"s3a://{self.value}", *(p.strip("/") for p in parts if p)])


class Topic(StrEnum):
    """Kafka topics; partition counts come from the settings."""

    TICKS = "tickerlake.ticks"  # quote/trade events keyed by symbol; malformed ones are
    # quarantined in the lake with their reason by the streaming job (no dead-letter topic)


class Namespace(StrEnum):
    """Iceberg namespaces; each keeps its tables in the bucket of the same name."""

    PROCESSED = "processed"
    REALTIME = "realtime"

    def table_location(self, table: str) -> str:
        """Where a table of this namespace keeps its data and metadata: its own bucket.

        Set explicitly on CREATE TABLE: the JDBC catalog ignores a namespace's location and would
        put every table under the catalog's warehouse path.
        """
        return Bucket(self.value).s3a(ICEBERG_DIR, table)

    def qualified(self, catalog: str, table: str) -> str:
        return f"{catalog}.{self.value}.{table}"


ICEBERG_DIR = "iceberg"  # the prefix inside a bucket under which Iceberg tables live


# --- Object layout in the buckets (keys, not URIs) -------------------------------------------
# raw:       ohlcv/interval=1d/source=synthetic/symbol=AAPL/month=2026-01/bars.csv
# processed: iceberg/bars_1d|bars_1m|anomalies/{data,metadata}/     (the Iceberg tables: the one copy)
#            quarantine/ohlcv/interval=1d/date=2026-01-02/part-*.parquet (rows with a reason)
#            repairs/ohlcv/interval=1d/date=2026-01-02/part-*.parquet (bars kept, range widened)
#            quality/bars/interval=1d/start=2026-01-02_end=2026-01-03.json (the gate's result)
RAW_OHLCV_PREFIX = "ohlcv"
# The processed bars' Airflow asset keeps the URI it had when a Parquet copy lived there (its
# event history and the DAGs scheduled on it stay attached); the data is the Iceberg tables.
PROCESSED_BARS_PREFIX = "bars"
QUARANTINE_OHLCV_PREFIX = "quarantine/ohlcv"
REPAIRS_OHLCV_PREFIX = "repairs/ohlcv"
QUALITY_BARS_PREFIX = "quality/bars"
# What each transform committed (its summary, with the bars table's snapshot id): the gate reads it
TRANSFORM_BARS_PREFIX = "transform/bars"


def raw_ohlcv_source_prefix(interval: str, source: str) -> str:
    return f"{RAW_OHLCV_PREFIX}/interval={interval}/source={source}/"


class RawSpan(StrEnum):
    """How many sessions one raw object holds; the value is its key's hive name."""

    DAY = "date"
    MONTH = "month"

    def of(self, day: str) -> str:
        """The span's value for an ISO session date: `2026-01-02` or `2026-01`."""
        return day[:7] if self is RawSpan.MONTH else day


# One object per symbol and month, daily and minute bars alike. Per day, a daily bar's object held
# one row, and a decade of one symbol was 2,500 objects, each a PUT, a HEAD and a GET (measured: a
# 10-year backfill and transform of two symbols spent 90 s on 5,057 objects); minute bars per day
# cost the transform 62 of its 104 s at 1M bars in 2,600 objects. The price: a daily run reads and
# rewrites its symbols' month so far (at most ~23 sessions; 9,000 minute bars, ~0.7 MB a symbol).
RAW_SPAN = {"1d": RawSpan.MONTH, "1m": RawSpan.MONTH}


# A raw key's span (group 1) and its value (group 2: `date=2026-01-02` or `month=2026-01`); plain
# groups, so that Python's `re` and Spark's (Java's) regexp_extract read it alike.
RAW_SPAN_PATTERN = r"/(date|month)=(\d{4}-\d{2}(?:-\d{2})?)/"


def raw_ohlcv_key(interval: str, source: str, symbol: str, day: str) -> str:
    """The raw object holding (source, symbol)'s bars of session `day` (ISO): one per symbol and
    month. A rerun rewrites the same objects."""
    span = RAW_SPAN[interval]
    return f"{raw_ohlcv_source_prefix(interval, source)}symbol={symbol}/{span.value}={span.of(day)}/bars.csv"


def legacy_raw_ohlcv_key(interval: str, source: str, symbol: str, day: str) -> str:
    """The per-day object backfills wrote before raw bars went per month (2026-12-07): still read
    by the transform, where a month object's row of the same bar wins (docs/batch.md)."""
    return f"{raw_ohlcv_source_prefix(interval, source)}symbol={symbol}/date={day}/bars.csv"


def quarantine_prefix(interval: str) -> str:
    return f"{QUARANTINE_OHLCV_PREFIX}/interval={interval}/"


def repairs_prefix(interval: str) -> str:
    return f"{REPAIRS_OHLCV_PREFIX}/interval={interval}/"


def quality_key(interval: str, start: str, end: str) -> str:
    return f"{QUALITY_BARS_PREFIX}/interval={interval}/start={start}_end={end}.json"


def transform_result_key(interval: str, start: str, end: str) -> str:
    return f"{TRANSFORM_BARS_PREFIX}/interval={interval}/start={start}_end={end}.json"


class Table(StrEnum):
    """Iceberg tables (namespace.table)."""

    BARS_1D = "processed.bars_1d"
    BARS_1M = "processed.bars_1m"
    ANOMALIES = "processed.anomalies"
    TICKS = "realtime.ticks"
    QUARANTINE_TICKS = "realtime.quarantine_ticks"
    LIVE_BARS_1M = "realtime.bars_1m"
    LIVE_BARS_5M = "realtime.bars_5m"

    @property
    def namespace(self) -> Namespace:
        return Namespace(self.value.split(".")[0])

    @property
    def table(self) -> str:
        return self.value.split(".")[1]

    @classmethod
    def bars(cls, interval: str) -> "Table":
        return {"1d": cls.BARS_1D, "1m": cls.BARS_1M}[str(interval)]


# Airflow Asset URIs (the lake's datasets as the scheduler sees them).
RAW_OHLCV_ASSET_URI = f"s3://{Bucket.RAW.value}/{RAW_OHLCV_PREFIX}"
PROCESSED_BARS_ASSET_URI = f"s3://{Bucket.PROCESSED.value}/{PROCESSED_BARS_PREFIX}"

# The streaming job's records as they came, one Parquet directory per micro-batch (raw bucket):
#   archive/ticks/batch_id=N/part-*.parquet   (kafka_partition, kafka_offset, kafka_timestamp, key, value)
ARCHIVE_TICKS_PREFIX = "archive/ticks"
# The streaming job's state beside its Iceberg tables (realtime bucket):
#   _state/stream_ticks/progress.json   both queries' StreamingQueryProgress and the job's counters
STREAM_STATE_PREFIX = "_state/stream_ticks"
REALTIME_ASSET_URI = f"s3://{Bucket.REALTIME.value}/{ICEBERG_DIR}/ticks"

# Exchange symbols as the sources spell them (AAPL, BRK.B, ^GSPC, EURUSD=X, BTC-USD). Checked where
# a symbol enters (a backfill's params, a stream event): it becomes part of object keys, table
# rows and queries downstream, so nothing else may pass.
SYMBOL_PATTERN = r"^[A-Z0-9^][A-Z0-9.^=\-]{0,19}$"


def invalid_symbols(symbols) -> list[str]:
    import re

    return [s for s in symbols if not re.fullmatch(SYMBOL_PATTERN, s)]
