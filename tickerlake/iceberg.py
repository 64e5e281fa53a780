"""Idempotent writes to Iceberg tables from Spark."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def merge_into(source: "DataFrame", table: str, keys: Sequence[str]) -> int:
    """MERGE `source` into `table` on `keys`, touching only rows that are new or changed.

    Rows identical to the table's (null-safe on every column) are dropped before the MERGE, and no
    commit happens when nothing is left: a rerun of the same input changes nothing, not even the
    data files (copy-on-write MERGE would otherwise rewrite every file holding a matched key).
    Returns the number of rows inserted or updated. `source` must have the table's columns.
    """
    spark = source.sparkSession
    target = spark.table(table)
    columns = target.columns
    source = source.select(*columns).dropDuplicates(list(keys))
    unchanged = " AND ".join(f"s.`{c}` <=> t.`{c}`" for c in columns)
    changed = (source.alias("s")
               .join(target.alias("t"), on=[source[k] == target[k] for k in keys], how="left")
               .where(f"NOT ({unchanged})")
               .select("s.*"))
    changed = changed.cache()
    try:
        count = changed.count()
        if count == 0:
            return 0
        view = f"tickerlake_merge_{abs(hash((table, id(changed))))}"
        changed.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        spark.sql(f"MERGE INTO {table} t USING {view} s ON {on} "
                  "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
        spark.catalog.dropTempView(view)
        return count
    finally:
        changed.unpersist()
