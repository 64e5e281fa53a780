"""Creates the stream's tables and then makes COUNT small commits into `realtime.ticks` as the
stream's micro-batches leave them: 20 ticks each, one data file and one snapshot per commit, all in
one (date, hour) partition of its own. Run by the maintenance test as
`python -m tests.spark_small_commits COUNT YYYY-MM-DD HOUR`.

How, and why: one commit of a Spark append costs about 0.66 s here (329 s for 500 on 2 cores, the
suite's slowest step), and pyiceberg's grows with the snapshot count. So Spark writes the COUNT
files in one job into a scratch table of the same schema and partitioning, and Iceberg's Java
API appends them to `realtime.ticks` one file per fast append, inside one transaction: COUNT
snapshots, each with its own manifest, as COUNT micro-batches leave them; only the table
metadata is written once instead of COUNT times (the maintenance reads snapshots, manifests and
files, never the metadata log). The scratch table is dropped without purging its files."""
from __future__ import annotations

import json
import sys
import time
from datetime import UTC, date, datetime


def event_id(commit: int, row: int) -> str:
    """The id of each tick written (the test derives the same set)."""
    return f"maint-{commit:04d}-{row:02d}"


def main(count: int, day: date, hour: int) -> None:
    from spark_jobs.stream_ticks import ensure_tables
    from tickerlake.core.datasets import SPARK_TYPES, TICKS
    from tickerlake.core.names import Table
    from tickerlake.core.settings import get_settings
    from tickerlake.core.spark import build_spark_session

    began = time.perf_counter()
    settings = get_settings()
    spark = build_spark_session("maintenance-test-commits", settings)
    ensure_tables(spark, settings)
    laps = {"session_and_tables": time.perf_counter() - began}
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()
    values = {"event_id": "format_string('maint-%04d-%02d', commit, id)",
              "event_time": f"timestamp_seconds({start} + commit * 7 + id * 0.3)",
              "symbol": "'MAINT'", "price": "100 + id / 10", "size": "10 + id", "bid": "NULL", "ask": "NULL",
              "source": "'test'", "date": f"DATE'{day.isoformat()}'", "kafka_partition": "NULL",
              "kafka_offset": "NULL", "hour": str(hour)}
    assert set(values) == set(TICKS.column_names)
    # one task per commit, each writing its 20 rows as one file (the table never shuffles)
    rows = spark.range(0, count * 20, 1, count).selectExpr("id DIV 20 AS commit", "id % 20 AS id")
    jvm = spark._jvm
    iceberg = jvm.org.apache.iceberg
    catalog = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergCatalog(spark._jsparkSession,
                                                                          settings.iceberg.catalog)
    ticks = catalog.loadTable(iceberg.catalog.TableIdentifier.parse(str(Table.TICKS)))
    scratch_id = iceberg.catalog.TableIdentifier.parse(f"{Table.TICKS}_small_commits")
    if catalog.tableExists(scratch_id):
        catalog.dropTable(scratch_id, True)
    props = jvm.java.util.HashMap()
    props.put("write.distribution-mode", "none")
    catalog.createTable(scratch_id, ticks.schema(), ticks.spec(), props)
    scratch_name = f"{settings.iceberg.catalog}.{Table.TICKS}_small_commits"

    rows.selectExpr(*(f"CAST({values[c.name]} AS {SPARK_TYPES[c.kind]}) AS `{c.name}`"
                      for c in TICKS.columns)).writeTo(scratch_name).append()
    laps["write_files"] = time.perf_counter() - began - sum(laps.values())
    scratch = catalog.loadTable(scratch_id)
    files, it = [], scratch.currentSnapshot().addedDataFiles(scratch.io()).iterator()
    while it.hasNext():
        files.append(it.next())
    assert len(files) == count, f"{len(files)} files for {count} commits"
    files.sort(key=lambda f: str(f.path()))  # Spark names a task's file by its partition: commit order
    transaction = ticks.newTransaction()
    for f in files:
        transaction.newFastAppend().appendFile(iceberg.DataFiles.builder(ticks.spec()).copy(f).build()).commit()
    transaction.commitTransaction()
    catalog.dropTable(scratch_id, False)  # its files now belong to realtime.ticks
    laps["commits"] = time.perf_counter() - began - sum(laps.values())
    print("SMALL_COMMITS " + json.dumps({k: round(v, 1) for k, v in laps.items()}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), date.fromisoformat(sys.argv[2]), int(sys.argv[3]))
