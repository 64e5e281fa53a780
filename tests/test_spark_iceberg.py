"""Spark writes and reads Iceberg in the lake over s3a://; pyiceberg reads the same table."""
from __future__ import annotations

import pytest

from spark_jobs import iceberg_roundtrip
from tickerlake.core.iceberg import iceberg_catalog
from tickerlake.core.names import Bucket, Namespace

pytestmark = pytest.mark.spark


def test_spark_writes_iceberg_into_the_lake_and_pyiceberg_reads_it(spark, s3, settings):
    # Start from no table (the DAG test may have run the same job on this stack already).
    spark.sql(f"DROP TABLE IF EXISTS {settings.iceberg.catalog}.processed.{iceberg_roundtrip.TABLE} PURGE")
    result = iceberg_roundtrip.run(spark)
    assert result["rows"] == len(iceberg_roundtrip.ROWS)
    assert result["merged"] == len(iceberg_roundtrip.ROWS)  # a fresh table: every row is new
    assert result["location"] == f"s3a://{Bucket.PROCESSED.value}/iceberg/{iceberg_roundtrip.TABLE}"

    # The data and metadata really are objects in the processed bucket (over S3, not local disk).
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=Bucket.PROCESSED.value,
                                                  Prefix=f"iceberg/{iceberg_roundtrip.TABLE}/")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys)
    assert any(k.endswith(".metadata.json") for k in keys)

    # pyiceberg, through the same JDBC catalog tables in Postgres, sees the same rows.
    table = iceberg_catalog(settings).load_table(f"{Namespace.PROCESSED.value}.{iceberg_roundtrip.TABLE}")
    arrow = table.scan().to_arrow()
    assert arrow.num_rows == len(iceberg_roundtrip.ROWS)
    assert sorted(zip(arrow["id"].to_pylist(), arrow["symbol"].to_pylist(), arrow["price"].to_pylist(), strict=True)) \
        == sorted(iceberg_roundtrip.ROWS)


def test_rerunning_the_merge_changes_nothing(spark, settings):
    first = iceberg_roundtrip.run(spark)
    table = iceberg_catalog(settings).load_table(f"{Namespace.PROCESSED.value}.{iceberg_roundtrip.TABLE}")
    files_before = {f.file.file_path for f in table.scan().plan_files()}
    second = iceberg_roundtrip.run(spark)
    table = table.refresh()
    assert (second["rows"], second["checksum"]) == (first["rows"], first["checksum"])
    assert second["merged"] == 0 and second["snapshots"] == first["snapshots"]
    assert {f.file.file_path for f in table.scan().plan_files()} == files_before


def test_pyiceberg_writes_are_visible_to_spark(spark, settings):
    """The catalog really is shared both ways: a table pyiceberg creates, Spark reads."""
    import pyarrow as pa

    catalog = iceberg_catalog(settings)
    name = f"{Namespace.REALTIME.value}.pyiceberg_probe"
    data = pa.table({"symbol": ["AAA", "BBB"], "price": [1.5, 2.5]})
    catalog.create_namespace_if_not_exists(Namespace.REALTIME.value)
    if catalog.table_exists(name):
        catalog.drop_table(name)
    table = catalog.create_table(name, schema=data.schema,
                                 location=Namespace.REALTIME.table_location("pyiceberg_probe"))
    table.append(data)
    rows = spark.table(f"{settings.iceberg.catalog}.{name}").orderBy("symbol").collect()
    assert [(r.symbol, r.price) for r in rows] == [("AAA", 1.5), ("BBB", 2.5)]


def test_merge_updates_changed_rows_and_inserts_new_ones_only(spark, settings):
    from tickerlake.core.iceberg import create_iceberg_table, merge_into

    name = create_iceberg_table(spark, Namespace.PROCESSED, "merge_probe", "id BIGINT, v STRING")
    spark.sql(f"DELETE FROM {name} WHERE true")
    schema = "id BIGINT, v STRING"
    assert merge_into(spark.createDataFrame([(1, "a"), (2, "b"), (3, None)], schema), name, ["id"]).upserted == 3
    # 1 unchanged, 2 changed, 3 unchanged (NULL equals NULL), 4 new; 2 duplicated in the input.
    batch = spark.createDataFrame([(1, "a"), (2, "B"), (2, "B"), (3, None), (4, "d")], schema)
    assert merge_into(batch, name, ["id"]).upserted == 2
    assert sorted(tuple(r) for r in spark.table(name).collect()) == [(1, "a"), (2, "B"), (3, None), (4, "d")]
    # Scoped: the source owns ids >= 3 completely; 3 is gone from it, so it is deleted; 1-2 stay.
    result = merge_into(spark.createDataFrame([(4, "d")], schema), name, ["id"], scope="id >= 3")
    assert (result.upserted, result.deleted) == (0, 1)
    assert sorted(tuple(r) for r in spark.table(name).collect()) == [(1, "a"), (2, "B"), (4, "d")]
