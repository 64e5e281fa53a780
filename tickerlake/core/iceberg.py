"""Iceberg helpers: namespaces and tables created from their declarations, idempotent MERGE from
Spark, and pyiceberg's view of the same catalog for Python-side reads."""
from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tickerlake.core.datasets import Dataset
from tickerlake.core.names import Bucket, Namespace, Table
from tickerlake.core.settings import Settings, get_settings

PYICEBERG_READ_WORKERS = 16

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyspark.sql import DataFrame, SparkSession

_views = itertools.count()


@dataclass(frozen=True)
class MergeResult:
    upserted: int  # rows inserted or updated
    deleted: int  # rows inside `scope` that the source no longer has


def merge_into(source: "DataFrame", table: str, keys: Sequence[str], scope: str | None = None, *,
               unique: bool = False, clustered_by: Sequence[str] = (),
               first_load_scope: str | None = None) -> MergeResult:
    """MERGE `source` into `table` on `keys`, touching only rows that are new or changed.

    Rows identical to the table's (null-safe on every column) are dropped before the MERGE, and no
    commit happens when nothing is left: a rerun of the same input changes nothing, not even the
    data files (a copy-on-write MERGE would otherwise rewrite every file holding a matched key).

    `scope` (a SQL predicate on the table, e.g. the interval being recomputed) says which rows the
    source owns completely: every source row falls in it, and rows in scope whose key the source
    lacks are deleted, so a rerun after a row turned out bad leaves no stale copy. When the table
    has no row in `first_load_scope` yet (default: `scope`; a first load), the rows are appended in
    one commit: no join, no MERGE, and the count comes from the commit's summary (the source is
    computed once). Give it when `scope` is narrower than where the source's keys may already be
    (a scope of one data source's rows, while other sources' rows share the dates and maybe keys).
    `unique`: the caller vouches that `source` has one row per key (no dedup shuffle).
    `clustered_by`: the table's partition columns; a first load is sorted by them within each task
    and written one partition file at a time, where the rows are (no shuffle by partition; Iceberg's
    fanout writer keeps a file and its buffers open per partition: ten years of daily partitions in
    one task ran a 2 GB heap out of memory).
    `source` must have the table's columns.
    """
    spark = source.sparkSession
    target = spark.table(table)
    columns = target.columns
    source = source.select(*columns)
    if not unique:
        source = source.dropDuplicates(list(keys))
    if scope and not target.where(first_load_scope or scope).limit(1).count():
        # No checkpoint here: an append, unlike MERGE, accepts any source, and a second copy of
        # a large interval is what runs a driver out of memory.
        if source.isEmpty():
            return MergeResult(0, 0)
        writer = source.writeTo(table)
        if clustered_by:
            # No shuffle either: Iceberg's default distribution (hash by partition) would move every
            # row once more to put each day in one task; sorted within each task, a day is one file
            # per task instead (measured at 1M minute bars: see docs/batch.md).
            writer = (source.sortWithinPartitions(*clustered_by).writeTo(table)
                      .option("fanout-enabled", "false").option("distribution-mode", "none"))
        writer.append()
        return MergeResult(int(_newest_snapshot(spark, table)["added"] or 0), 0)
    same = " AND ".join(f"s.`{c}` <=> t.`{c}`" for c in columns)
    on_keys = [source[k] == target[k] for k in keys]
    changed = (source.alias("s").join(target.alias("t"), on=on_keys, how="left")
               .where(f"NOT ({same})").select("s.*"))
    upserted = _merge(changed, table, keys, "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    deleted = 0
    if scope:
        in_scope = spark.table(table).where(scope)
        stale = in_scope.join(source.select(*keys), on=list(keys), how="left_anti").select(*keys)
        deleted = _merge(stale, table, keys, "WHEN MATCHED THEN DELETE")
    return MergeResult(upserted, deleted)


def _newest_snapshot(spark: "SparkSession", table: str) -> dict:
    """The newest commit's id and the rows it added (its snapshot summary: no scan of the data)."""
    row = spark.sql(f"SELECT snapshot_id AS id, summary['added-records'] AS added FROM {table}.snapshots "
                    "ORDER BY committed_at DESC LIMIT 1").first()
    return row.asDict() if row else {"id": None, "added": None}


def current_snapshot(spark: "SparkSession", table: str) -> int | None:
    """The id of the table's current snapshot (None for a table never written)."""
    snapshot_id = _newest_snapshot(spark, table)["id"]
    return int(snapshot_id) if snapshot_id is not None else None


def _merge(rows: "DataFrame", table: str, keys: Sequence[str], actions: str) -> int:
    # Materialise first: MERGE needs a deterministic source, and a plan that runs a Python UDF
    # (applyInPandas) is not; a checkpoint also stops the source being computed twice.
    rows = rows.localCheckpoint(eager=True)
    count = rows.count()
    if count == 0:
        return 0
    view = f"tickerlake_merge_{next(_views)}"
    rows.createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    rows.sparkSession.sql(f"MERGE INTO {table} t USING {view} s ON {on} {actions}")
    rows.sparkSession.catalog.dropTempView(view)
    return count


def ensure_namespaces(spark: "SparkSession", settings: Settings | None = None) -> None:
    """Create each Iceberg namespace (tables set their own location: `Namespace.table_location`)."""
    catalog = (settings or get_settings()).iceberg.catalog
    for namespace in Namespace:
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {catalog}.{namespace.value}")


def create_iceberg_table(spark: "SparkSession", namespace: Namespace, table: str, columns: str,
                         *, partitioned_by: str = "", settings: Settings | None = None,
                         properties: dict[str, str] | None = None) -> str:
    """CREATE TABLE IF NOT EXISTS in the namespace's bucket; returns the qualified name.

    `properties` hold for a table that exists too (an older lake's): those that differ are set,
    and none is set again when they already hold (no metadata commit on every run)."""
    catalog = (settings or get_settings()).iceberg.catalog
    name = namespace.qualified(catalog, table)
    partition = f" PARTITIONED BY ({partitioned_by})" if partitioned_by else ""
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({columns}) USING iceberg{partition} "
              f"LOCATION '{namespace.table_location(table)}'"
              + (f" TBLPROPERTIES ({_properties_sql(properties)})" if properties else ""))
    if properties:
        current = {row["key"]: row["value"] for row in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}
        changed = {k: v for k, v in properties.items() if current.get(k) != v}
        if changed:
            spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({_properties_sql(changed)})")
    return name


def _properties_sql(properties: dict[str, str]) -> str:
    return ", ".join(f"'{k}'='{v}'" for k, v in properties.items())


def create_declared_table(spark: "SparkSession", table: Table, dataset: Dataset,
                          settings: Settings | None = None, properties: dict[str, str] | None = None) -> str:
    """CREATE TABLE IF NOT EXISTS for an Iceberg table from its dataset's declaration."""
    if table not in dataset.tables:
        raise ValueError(f"dataset {dataset.name} does not declare the table {table}")
    return create_iceberg_table(spark, table.namespace, table.table, dataset.spark_ddl(),
                                partitioned_by=dataset.spark_partitioning(), settings=settings,
                                properties=properties)


def iceberg_catalog(settings: Settings | None = None) -> "SqlCatalog":
    """pyiceberg's view of the same JDBC catalog Spark uses (for Python-side reads)."""
    from pyiceberg.catalog.sql import SqlCatalog

    settings = settings or get_settings()
    s3, pg = settings.s3, settings.pg
    # pyiceberg reads a scan's data files on one shared thread pool, sized for CPU work by default
    # (min(32, cores + 4): 6 here); its reads wait on S3, one file per partition, so a scan of a
    # decade of day partitions waits on 5,000 GETs. A user's PYICEBERG_MAX_WORKERS still wins.
    os.environ.setdefault("PYICEBERG_MAX_WORKERS", str(PYICEBERG_READ_WORKERS))
    return SqlCatalog(
        settings.iceberg.catalog,
        uri=pg.sqlalchemy_url(driver="psycopg"),
        warehouse=Bucket.PROCESSED.s3a("iceberg"),
        # a pooled connection is checked before use: a long-running job survives a Postgres restart
        pool_pre_ping="true",
        **{
            "s3.endpoint": s3.endpoint_url,
            "s3.access-key-id": s3.access_key_id,
            "s3.secret-access-key": s3.secret_access_key.get_secret_value(),
            "s3.region": s3.region,
            "s3.force-virtual-addressing": "false",
        },
    )
