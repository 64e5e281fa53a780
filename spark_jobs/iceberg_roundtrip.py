"""Write and read one Iceberg table in the lake: the stack's end-to-end smoke job.

Creates `<catalog>.processed.smoke_roundtrip` (if absent), MERGEs a small deterministic batch into
it keyed on `id` (so a rerun changes nothing), reads it back and prints the row count, the
table's location and its snapshot count. Exit code 1 if the read does not match the write.

    python -m spark_jobs.iceberg_roundtrip            # or: spark-submit spark_jobs/iceberg_roundtrip.py
"""
from __future__ import annotations

import sys
from typing import Any

from tickerlake.core.errors import one_line_errors
from tickerlake.core.iceberg import create_iceberg_table, ensure_namespaces, merge_into
from tickerlake.core.names import Namespace
from tickerlake.core.settings import get_settings
from tickerlake.core.spark import build_spark_session

TABLE = "smoke_roundtrip"
ROWS = [(i, f"SYM{i % 5}", round(100 + i * 0.25, 2)) for i in range(100)]


def run(spark) -> dict[str, Any]:
    ensure_namespaces(spark)
    name = create_iceberg_table(spark, Namespace.PROCESSED, TABLE, "id BIGINT, symbol STRING, price DOUBLE")
    merged = merge_into(spark.createDataFrame(ROWS, "id BIGINT, symbol STRING, price DOUBLE"), name, ["id"]).upserted
    read = spark.table(name)
    count = read.count()
    checksum = read.selectExpr("sum(id * price) AS c").first()["c"]
    location = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").where("col_name = 'Location'").first()
    snapshots = spark.sql(f"SELECT count(*) AS n FROM {name}.snapshots").first()["n"]
    return {"table": name, "merged": merged, "rows": count, "checksum": checksum,
            "location": location["data_type"] if location else "?", "snapshots": snapshots}


@one_line_errors
def main() -> int:
    settings = get_settings()
    spark = build_spark_session("tickerlake-iceberg-roundtrip", settings)
    try:
        result = run(spark)
    finally:
        spark.stop()
    for key, value in result.items():
        print(f"{key:<10} {value}")
    expected = sum(i * p for i, _, p in ROWS)
    ok = result["rows"] == len(ROWS) and abs(result["checksum"] - expected) < 1e-6
    print("round trip:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
