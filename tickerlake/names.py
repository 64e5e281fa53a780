"""Bucket, topic, namespace and table names: the one place they are spelled."""
from __future__ import annotations

from enum import Enum


class Bucket(str, Enum):
    """The lake's three buckets (layers)."""

    RAW = "raw"  # source data as landed: CSV backfills, Kafka landing files
    REALTIME = "realtime"  # the streaming job's Parquet and Iceberg output
    PROCESSED = "processed"  # cleaned data, indicators, anomalies, quarantine

    def __str__(self) -> str:
        return self.value

    def s3a(self, *parts: str) -> str:
        """An s3a:// URI for Spark (Hadoop S3A) below this bucket."""
        return "/".join([f"s3a://{self.value}", *(p.strip("/") for p in parts if p)])


class Topic(str, Enum):
    """Kafka topics; partition counts come from the settings."""

    TICKS = "tickerlake.ticks"  # quote/trade events keyed by symbol
    TICKS_DLQ = "tickerlake.ticks.dlq"  # malformed events, with the reason in a header

    def __str__(self) -> str:
        return self.value


class Namespace(str, Enum):
    """Iceberg namespaces; each keeps its tables in the bucket of the same name."""

    PROCESSED = "processed"
    REALTIME = "realtime"

    def __str__(self) -> str:
        return self.value

    def table_location(self, table: str) -> str:
        """Where a table of this namespace keeps its data and metadata: its own bucket.

        Set explicitly on CREATE TABLE: the JDBC catalog ignores a namespace's location and would
        put every table under the catalog's warehouse path.
        """
        return Bucket(self.value).s3a(ICEBERG_DIR, table)

    def qualified(self, catalog: str, table: str) -> str:
        return f"{catalog}.{self.value}.{table}"


ICEBERG_DIR = "iceberg"  # the prefix inside a bucket under which Iceberg tables live
