"""Make the Spark driver's class archive (JDK class-data sharing), so every Spark job starts faster.

    python -m tickerlake.dev.class_archive [--force]    (`make setup` runs it)

A Spark job's JVM spends seconds loading and verifying the same ~15,000 classes (Spark SQL,
Iceberg, Hadoop S3A, Arrow) before it does any work; on two cores that is a large share of a
short task. The JDK can map them from an archive instead (CDS, JEP 350). This runs a small job
through the lake's own session builder that touches the parts the lake's jobs use (Iceberg
tables with MERGE, window functions, `applyInPandas`, Arrow collection, a stateful stream on
RocksDB, the S3A, JDBC and Kafka classes) on a throwaway local Iceberg catalog (no service
needed) and has the JVM write the classes it loaded to `<jars dir>/spark-classes.jsa` at exit.

`tickerlake.core.spark.class_archive_options` then maps it into every driver JVM (the session
builder and the SparkSubmitOperator). The JVM checks the archive against its own build and
classpath and ignores it when they differ (a JDK upgrade, other jars): jobs then start as they
would without it, so a stale archive costs speed, never correctness. This makes it again when
the JDK or a jar changed (a fingerprint beside it), and does nothing otherwise. Figures:
docs/operations.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tickerlake.core.errors import StackError, one_line_errors


def _workload(warehouse: str, dump_to: str) -> None:
    """Run in a child process: the classes the lake's jobs load, then exit (the JVM dumps them)."""
    import pandas as pd
    from pyspark.sql import functions as F

    from tickerlake.core.settings import get_settings
    from tickerlake.core.spark import build_spark_session

    settings = get_settings()
    catalog = "archive_catalog"
    spark = build_spark_session("tickerlake-class-archive", settings, extra_conf={
        "spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={dump_to} -Xlog:cds=off -Xlog:cds+dynamic=off",
        "spark.ui.enabled": "false",
        f"spark.sql.catalog.{catalog}": "org.apache.iceberg.spark.SparkCatalog",
        f"spark.sql.catalog.{catalog}.type": "hadoop",
        f"spark.sql.catalog.{catalog}.warehouse": f"file://{warehouse}",
        "spark.sql.defaultCatalog": catalog,
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    })
    jvm = spark._jvm
    assert jvm is not None
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    for name in ("org.apache.hadoop.fs.s3a.S3AFileSystem", "org.apache.iceberg.jdbc.JdbcCatalog",
                 "org.postgresql.Driver", "org.apache.spark.sql.kafka010.KafkaSourceProvider",
                 "org.apache.kafka.clients.consumer.KafkaConsumer"):
        try:
            jvm.java.lang.Class.forName(name, True, loader)
        except Exception:  # noqa: BLE001 - an optional jar (the Kafka source) may be absent
            pass
    spark.sql("CREATE NAMESPACE IF NOT EXISTS scratch")
    spark.sql("CREATE TABLE scratch.bars (symbol STRING, ts TIMESTAMP, close DOUBLE, volume BIGINT, date DATE) "
              "USING iceberg PARTITIONED BY (date)")
    rows = spark.range(0, 20_000).selectExpr(
        "concat('S', id % 20) AS symbol", "timestamp_seconds(1700000000 + id * 60) AS ts",
        "100 + (id % 97) / 10.0 AS close", "id % 1000 AS volume")
    rows = rows.withColumn("date", rows["ts"].cast("date"))
    rows.writeTo("scratch.bars").append()
    rows.createOrReplaceTempView("updates")
    spark.sql("MERGE INTO scratch.bars t USING updates s ON t.symbol = s.symbol AND t.ts = s.ts "
              "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    spark.sql("SELECT symbol, ts, avg(close) OVER (PARTITION BY symbol ORDER BY ts ROWS 19 PRECEDING) AS sma, "
              "lag(close) OVER (PARTITION BY symbol ORDER BY ts) AS prev FROM scratch.bars").collect()

    def per_symbol(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[["symbol", "close"]].head(1)

    spark.table("scratch.bars").groupBy("symbol").applyInPandas(per_symbol, "symbol string, close double").collect()
    spark.table("scratch.bars").limit(1000)._collect_as_arrow()
    spark.sql("SELECT * FROM scratch.bars.snapshots").collect()
    stream = (spark.readStream.format("rate").option("rowsPerSecond", 100).load()
              .withWatermark("timestamp", "10 seconds").dropDuplicatesWithinWatermark(["value"])
              .groupBy(F.window("timestamp", "1 minute")).count())

    def each_batch(frame, _batch_id: int) -> None:
        frame.collect()

    query = (stream.writeStream.outputMode("update").foreachBatch(each_batch)
             .option("checkpointLocation", f"{warehouse}/checkpoint").start())
    time.sleep(6)
    query.stop()
    spark.stop()


def fingerprint(jars_dir: Path) -> str:
    """What the archive was made from: the JDK build, Spark's own jars and the lake's jars."""
    import hashlib
    import shutil

    import pyspark

    java = Path(shutil.which("java") or "java").resolve()
    parts = [str(java), str(java.stat().st_mtime_ns) if java.exists() else ""]
    for folder in (Path(pyspark.__file__).parent / "jars", jars_dir):
        parts += [f"{p.name}:{p.stat().st_size}" for p in sorted(folder.glob("*.jar"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def make_archive(target: Path) -> float:
    """Write the archive to `target` (atomically); the seconds it took."""
    began = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tickerlake-cds-") as scratch:
        partial = Path(scratch) / target.name
        done = subprocess.run([sys.executable, "-m", "tickerlake.dev.class_archive", "--workload", scratch,
                               str(partial)], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "TICKERLAKE_SPARK_DRIVER_MEMORY": "1g"})
        if done.returncode != 0 or not partial.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise StackError("the Spark class archive was not written: " + " | ".join(tail))
        partial.replace(target)
    return time.monotonic() - began


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.settings import SparkSettings  # the jars dir only: no secret settings needed

    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.class_archive",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="make it even if it exists")
    parser.add_argument("--workload", nargs=2, metavar=("SCRATCH", "DUMP_TO"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload:
        _workload(*args.workload)
        return 0
    spark = SparkSettings()
    target, key = spark.class_archive, spark.class_archive.with_suffix(".key")
    made_from = fingerprint(spark.jars_dir)
    if target.is_file() and key.is_file() and key.read_text() == made_from and not args.force:
        print(f"{target}: up to date")
        return 0
    seconds = make_archive(target)
    key.write_text(made_from)
    print(f"{target}: {target.stat().st_size / 2**20:.0f} MiB of Spark's classes, made in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
