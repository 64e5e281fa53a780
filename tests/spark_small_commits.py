"""Creates the stream's tables and then makes COUNT small commits into `realtime.ticks`, from Spark,
as the stream's micro-batches leave them: 20 ticks each, one data file per commit, all in one
(date, hour) partition of its own. Run by the maintenance test as
`python -m tests.spark_small_commits COUNT YYYY-MM-DD HOUR`.

Why Spark and not pyiceberg: pyiceberg's commit cost grows with the snapshot count (0.06 s at 50
snapshots, 0.29 s at 200, mostly pydantic copies of the table metadata), which made the 500 commits
the suite's slowest step; the Java library's commits stay flat."""
from __future__ import annotations

import sys
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

    settings = get_settings()
    spark = build_spark_session("maintenance-test-commits", settings)
    table = ensure_tables(spark, settings)[Table.TICKS]
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()
    values = {"event_id": "concat('maint-{commit:04d}-', lpad(CAST(id AS STRING), 2, '0'))",
              "event_time": f"timestamp_seconds({start} + {{commit}} * 7 + id * 0.3)",
              "symbol": "'MAINT'", "price": "100 + id / 10", "size": "10 + id", "bid": "NULL", "ask": "NULL",
              "source": "'test'", "date": f"DATE'{day.isoformat()}'", "kafka_partition": "NULL",
              "kafka_offset": "NULL", "hour": str(hour)}
    assert set(values) == set(TICKS.column_names)
    rows = spark.range(20).coalesce(1)  # one file per commit
    for commit in range(count):
        rows.selectExpr(*(f"CAST({values[c.name].format(commit=commit)} AS {SPARK_TYPES[c.kind]}) AS `{c.name}`"
                          for c in TICKS.columns)).writeTo(table).append()
    spark.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), date.fromisoformat(sys.argv[2]), int(sys.argv[3]))
