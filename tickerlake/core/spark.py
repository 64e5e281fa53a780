"""The one Spark session builder: every job gets its lake wiring from here.

It configures the provisioned jars, S3A (endpoint, path-style, credentials from the settings) and
the Iceberg catalog: a JDBC catalog whose metadata pointers live in the Postgres server, so Spark
and pyiceberg (`tickerlake.core.iceberg.iceberg_catalog()`) share the same tables. Jobs import
this module, never Airflow.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from tickerlake.core.errors import ConfigError
from tickerlake.core.jars import jar_paths, kafka_connector_missing
from tickerlake.core.names import Bucket
from tickerlake.core.settings import Settings, SparkSettings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def class_archive_options(spark: SparkSettings) -> str:
    """JVM options that map the class archive into the driver (empty when there is none).

    Class-data sharing: the driver maps the Spark, Iceberg and Hadoop classes that
    `python -m tickerlake.dev.class_archive` recorded instead of loading and verifying them one by
    one (a job's JVM starts seconds sooner). The JVM ignores an archive that does not match its
    build or classpath, and the log options keep that silent: then it only starts slower."""
    archive = spark.class_archive
    if not archive.is_file() or any(c.isspace() for c in str(archive)):  # Spark splits the options on spaces
        return ""
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


# HotSpot never JIT-compiles a method above 8,000 bytes of bytecode; Spark's whole-stage code
# for a wide projection (the transform's validation rules: one CASE over ~30 rules) is larger,
# so it ran interpreted for the whole job. Measured at 1M bars: read + validate 23.7 s -> 14.6 s.
JIT_OPTIONS = "-XX:-DontCompileHugeMethods"


def driver_java_options(spark: SparkSettings) -> str:
    """The driver JVM's options: the class archive and the JIT's size limit lifted."""
    return f"{class_archive_options(spark)} {JIT_OPTIONS}".strip()


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting the lake needs, as a plain dict (also used for spark-submit --conf)."""
    s3, pg, catalog = settings.s3, settings.pg, settings.iceberg.catalog
    jars = jar_paths(settings.spark.jars_dir)
    prefix = f"spark.sql.catalog.{catalog}"
    return {
        "spark.jars": ",".join(str(p) for p in jars),
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.driver.extraJavaOptions": driver_java_options(settings.spark),
        "spark.executor.extraJavaOptions": JIT_OPTIONS,  # a cluster's executors run the same code
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # Standard Parquet timestamps (INT64 micros, UTC-adjusted), not Spark's legacy INT96: what
        # Snowflake's COPY, pyarrow and the Postgres load read without guessing a time zone.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": str(settings.spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1" if settings.spark.master.startswith("local") else "",
        "spark.driver.bindAddress": "127.0.0.1" if settings.spark.master.startswith("local") else "",
        # A read of many paths or partition directories (the quarantine's `date=` directories)
        # lists them on the driver: above the default 32 Spark starts a listing job, one task per
        # path, which on two cores took twice as long (measured when Spark still read the raw
        # CSV objects: 11.7 s against 5.7 s for 2,600 of them).
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
        # S3A, store-neutral: path-style works on MinIO, SeaweedFS and AWS alike.
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": s3.endpoint_url,
        "spark.hadoop.fs.s3a.endpoint.region": s3.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(s3.endpoint_url.startswith("https")).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": s3.access_key_id,
        "spark.hadoop.fs.s3a.secret.key": s3.secret_access_key.get_secret_value(),
        # Per object written, S3A 3.3.1 deletes the parent "directory" markers (a request per file,
        # every Iceberg data file included) and buffers the upload on local disk first. Markers
        # kept (every reader here is S3A 3.3.1, pyarrow or boto3: marker-aware or listing-free)
        # and buffers in memory: measured at 1M minute bars, the partitioned append 6.0-6.9 s ->
        # 5.1 s (5.5-5.7 s with the markers kept alone). S3A 3.3.1 then warns once in a while
        # "Closing output stream statistics while data is still marked as pending upload" (with
        # either buffer): its statistics, not the data (the commit's counts match).
        "spark.hadoop.fs.s3a.directory.marker.retention": "keep",
        "spark.hadoop.fs.s3a.fast.upload.buffer": "bytebuffer",
        # S3 has no rename: the v2 committer moves each task's files once, not twice.
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
        # Parquet/Iceberg committers write many small objects; fail fast on a dead endpoint.
        "spark.hadoop.fs.s3a.attempts.maximum": "5",
        "spark.hadoop.fs.s3a.connection.establish.timeout": "5000",
        # Iceberg: JDBC catalog on Postgres, data and metadata in the lake over s3a://.
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        f"{prefix}.uri": pg.jdbc_url,
        f"{prefix}.jdbc.user": pg.user,
        f"{prefix}.jdbc.password": pg.password.get_secret_value(),
        # V1 adds the view column; pyiceberg's SqlCatalog reads the same tables.
        f"{prefix}.jdbc.schema-version": "V1",
        # The pool reconnects on connection-failure states (08xxx); add the states a Postgres
        # restart gives an idle connection (admin/crash shutdown, cannot connect now), so that a
        # long-running job's next catalog call reconnects instead of failing.
        f"{prefix}.retryable_status_codes": "57P01,57P02,57P03",
        f"{prefix}.warehouse": Bucket.PROCESSED.s3a("iceberg"),
        # Streaming foreachBatch writes and batch reads must see each other's commits.
        f"{prefix}.cache-enabled": "false",
        "spark.sql.defaultCatalog": catalog,
    }


def build_spark_session(app_name: str, settings: Settings | None = None,
                        extra_conf: dict[str, str] | None = None) -> "SparkSession":
    """A SparkSession wired to the lake; the same for every batch and streaming job."""
    from pyspark.sql import SparkSession

    settings = settings or get_settings()
    if settings.spark.master.startswith("local"):
        # The Spark UI and block manager bind to SPARK_LOCAL_IP; without it they listen on every interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers run this interpreter (the venv's), not whatever `python3` is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(settings.spark.master)
    for key, value in {**spark_conf(settings), **(extra_conf or {})}.items():
        if value != "":
            builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def kafka_connector_missing_for(settings: Settings | None = None) -> list[str]:
    """Maven coordinates of the Kafka source's jars missing from the jars directory (by contents)."""
    settings = settings or get_settings()
    return kafka_connector_missing(jar_paths(settings.spark.jars_dir, strict=False))


def require_kafka_connector(settings: Settings | None = None) -> None:
    """One line naming what to install where, instead of Spark's "Failed to find data source: kafka"."""
    settings = settings or get_settings()
    missing = kafka_connector_missing_for(settings)
    if missing:
        raise ConfigError(
            f"Spark's Kafka source is not in TICKERLAKE_SPARK_JARS_DIR={settings.spark.jars_dir} (missing "
            f"{', '.join(missing)}): run `make jars` with Maven Central reachable or "
            f"TICKERLAKE_SPARK_LOCAL_JARS_DIR pointing at a folder that holds these jars")


def streaming_conf(settings: Settings) -> dict[str, str]:
    """What the streaming job adds to the session: RocksDB state, graceful stop."""
    return {
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        # Stateful operators (dedup within watermark, windowed bars) keep their state in RocksDB,
        # checkpointed as a changelog per batch instead of a full snapshot.
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Run each task at once: the scheduler would otherwise wait up to 3 s per stage for the
        # executor that holds a state store (one executor here; on a cluster, a reload is cheaper).
        "spark.locality.wait": "0",
        # Small micro-batches: a shuffle partition per core, not 200.
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
    }
