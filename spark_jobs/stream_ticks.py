"""Long-running Spark Structured Streaming job: ticks -> realtime Parquet + Iceberg ticks and bars.

    python -m spark_jobs.stream_ticks [--run-for SECONDS] [--available-now]

Source (TICKERLAKE_STREAM_SOURCE): `kafka` = Spark's own Kafka source (`format("kafka")`);
`landing` = the landing files the ingestion-side sink writes (`s3://raw/landing/ticks/`, read with
Spark's file source); `auto` = kafka when the connector class loads, else landing. The rest of the
job is identical. Two queries share the parsed stream, each with its own checkpoint:

1. `ticks_parquet`: valid events as Parquet in `s3://realtime/ticks/date=/hour=/` through Spark's
   file sink (exactly once: readers that honour `_spark_metadata`, Spark included, see each
   micro-batch once even after a replay);
2. `ticks_iceberg` (`foreachBatch`): malformed events and events later than the watermark go to
   `s3://realtime/quarantine/ticks/batch_id=N/` with the reason (overwritten on replay); the rest
   are MERGEd into `realtime.ticks` on `event_id`, and the 1- and 5-minute bars of every
   (symbol, window) the batch touched are recomputed from `realtime.ticks` and MERGEd into
   `realtime.bars_1m` / `realtime.bars_5m`. A replayed micro-batch changes nothing.

The watermark is (latest event time in `realtime.ticks` − TICKERLAKE_STREAM_WATERMARK_SECONDS),
fixed per batch id in `s3://realtime/_state/stream_ticks/watermark/` before the batch writes
anything, so a replay classifies every event as the first attempt did. Late events inside the
watermark update their bars. Progress (StreamingQueryProgress) goes to
`s3://realtime/_state/stream_ticks/progress.json` for the supervisor.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from tickerlake.core.datasets import LIVE_BARS, TICK_EVENT, TICKS
from tickerlake.core.errors import one_line_errors
from tickerlake.core.names import (
    LANDING_TICKS_PREFIX,
    REALTIME_QUARANTINE_PREFIX,
    REALTIME_TICKS_PREFIX,
    STREAM_STATE_PREFIX,
    Bucket,
    Table,
    Topic,
)
from tickerlake.core.settings import Settings, StreamSource, get_settings

KAFKA_SOURCE_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
LANDING_SCHEMA = ("partition INT, offset BIGINT, kafka_timestamp BIGINT, key STRING, value STRING, "
                  "value_base64 STRING")
# Every field read as text first: a wrong type is quarantined with its reason, not NULLed.
EVENT_SCHEMA = TICK_EVENT.spark_ddl(as_text=True)
BAR_MINUTES = {Table.LIVE_BARS_1M: 1, Table.LIVE_BARS_5M: 5}


def read_source(spark, source: StreamSource, settings: Settings):
    """The topic's records as (kafka_partition, kafka_offset, value) whichever source is used."""
    from pyspark.sql import functions as F

    if source is StreamSource.KAFKA:
        raw = (spark.readStream.format("kafka")
               .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
               .option("subscribe", Topic.TICKS.value)
               .option("startingOffsets", "earliest")
               .option("maxOffsetsPerTrigger", 100_000)
               .load())
        return raw.select(F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
                          F.col("value").cast("string").alias("value"))
    raw = (spark.readStream.schema(LANDING_SCHEMA)
           .option("maxFilesPerTrigger", settings.stream.max_files_per_trigger)
           .json(Bucket.RAW.s3a(LANDING_TICKS_PREFIX)))
    return raw.select(F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
                      F.coalesce("value", F.unbase64("value_base64").cast("string")).alias("value"))


def parse(records):
    """Typed event columns plus `reason` (NULL when the event is well formed)."""
    from pyspark.sql import functions as F

    event = F.from_json("value", EVENT_SCHEMA)
    parsed = records.withColumn("e", event).select(
        "kafka_partition", "kafka_offset", "value",
        F.col("e.event_id").alias("event_id"),
        F.to_timestamp("e.event_time").alias("event_time"),
        F.col("e.symbol").alias("symbol"),
        F.col("e.price").cast("double").alias("price"),
        F.col("e.size").cast("double").cast("bigint").alias("size"),
        F.col("e.bid").cast("double").alias("bid"),
        F.col("e.ask").cast("double").alias("ask"),
        F.col("e.source").alias("source"),
        # from_json is permissive (broken JSON gives a struct of NULLs): ask for the root instead
        F.get_json_object("value", "$").isNull().alias("_not_json"))
    rules = [
        (F.col("_not_json"), "not JSON"),
        (F.col("event_id").isNull(), "missing event_id"),
        (F.col("event_time").isNull(), "missing or unparsable event_time"),
        (F.col("symbol").isNull(), "missing symbol"),
        (F.col("price").isNull(), "missing or unparsable price"),
        (F.col("price") <= 0, "non-positive price"),
        (F.col("size").isNull() | (F.col("size") < 0), "missing or negative size"),
    ]
    reason = F.lit(None).cast("string")
    for condition, text in reversed(rules):
        reason = F.when(condition, F.lit(text)).otherwise(reason)
    return parsed.withColumn("reason", reason).drop("_not_json") \
        .withColumn("date", F.to_date("event_time")).withColumn("hour", F.hour("event_time"))


def ensure_tables(spark, settings: Settings) -> dict[Table, str]:
    from tickerlake.core.iceberg import create_declared_table, ensure_namespaces

    ensure_namespaces(spark, settings)
    names = {Table.TICKS: create_declared_table(spark, Table.TICKS, TICKS, settings)}
    for table in BAR_MINUTES:
        names[table] = create_declared_table(spark, table, LIVE_BARS, settings)
    return names


class BatchWriter:
    """The foreachBatch function: idempotent per batch id (see the module docstring)."""

    def __init__(self, settings: Settings, tables: dict[Table, str]):
        self.settings, self.tables = settings, tables

    def watermark(self, spark, s3, batch_id: int):
        """The watermark of this batch: read back if a previous attempt fixed it, else fixed now."""
        import datetime as dt

        key = f"{STREAM_STATE_PREFIX}/watermark/batch_id={batch_id}.json"
        try:
            body = s3.get_object(Bucket=Bucket.REALTIME.value, Key=key)["Body"].read()
            value = json.loads(body)["watermark"]
        except s3.exceptions.NoSuchKey:
            latest = spark.table(self.tables[Table.TICKS]).agg({"event_time": "max"}).first()[0]
            value = None if latest is None else (
                latest.replace(tzinfo=dt.UTC)
                - dt.timedelta(seconds=self.settings.stream.watermark_seconds)).isoformat()
            s3.put_object(Bucket=Bucket.REALTIME.value, Key=key,
                          Body=json.dumps({"batch_id": batch_id, "watermark": value}).encode())
        return value

    def __call__(self, batch, batch_id: int) -> None:
        from pyspark.sql import functions as F

        from tickerlake.core.clients import s3_client
        from tickerlake.core.iceberg import merge_into

        spark = batch.sparkSession
        s3 = s3_client(self.settings.s3)
        batch = batch.localCheckpoint(eager=True)  # deterministic input for MERGE, computed once
        watermark = self.watermark(spark, s3, batch_id)
        late = F.lit(False) if watermark is None else (F.col("event_time") < F.to_timestamp(F.lit(watermark)))
        classified = batch.withColumn(
            "reason", F.coalesce("reason", F.when(late, F.lit(f"later than the watermark {watermark}"))))

        bad = classified.where("reason IS NOT NULL")
        bad_path = Bucket.REALTIME.s3a(REALTIME_QUARANTINE_PREFIX, f"batch_id={batch_id}")
        if bad.limit(1).count():
            bad.select("kafka_partition", "kafka_offset", "value", "reason") \
               .withColumn("batch_id", F.lit(batch_id)).write.mode("overwrite").parquet(bad_path)
        good = classified.where("reason IS NULL").select(*TICKS.column_names)
        merge_into(good, self.tables[Table.TICKS], TICKS.keys)

        touched_days = [r.date for r in good.select("date").distinct().collect()]
        if not touched_days:
            return
        ticks = spark.table(self.tables[Table.TICKS]).where(F.col("date").isin(touched_days))
        for table, minutes in BAR_MINUTES.items():
            window = F.window("event_time", f"{minutes} minutes")
            keys = good.select("symbol", window.start.alias("window_start")).distinct()
            bars = bars_from_ticks(ticks, minutes).join(keys, ["symbol", "window_start"])
            merge_into(bars, self.tables[table], LIVE_BARS.keys)


def bars_from_ticks(ticks, minutes: int):
    """OHLCV bars of `minutes` from ticks (ordered by event time, then Kafka position)."""
    from pyspark.sql import functions as F

    window = F.window("event_time", f"{minutes} minutes")
    order = F.struct("event_time", "kafka_partition", "kafka_offset")
    return (ticks.groupBy("symbol", window.alias("w"))
            .agg(F.min_by("price", order).alias("open"), F.max("price").alias("high"),
                 F.min("price").alias("low"), F.max_by("price", order).alias("close"),
                 F.sum("size").alias("volume"),
                 (F.sum(F.col("price") * F.col("size")) / F.sum("size")).alias("vwap"),
                 F.count(F.lit(1)).alias("trades"))
            .select("symbol", F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
                    "open", "high", "low", "close", "volume", "vwap", "trades",
                    F.to_date(F.col("w.start")).alias("date"))
            .select(*LIVE_BARS.column_names))


def write_progress(s3, queries, source: StreamSource) -> None:
    progress = {q.name: q.lastProgress for q in queries}
    body = json.dumps({"written_at": time.time(), "source": source.value, "queries": progress}, default=str)
    s3.put_object(Bucket=Bucket.REALTIME.value, Key=f"{STREAM_STATE_PREFIX}/progress.json", Body=body.encode())


def start(spark, settings: Settings, *, available_now: bool = False):
    from tickerlake.core.spark import resolve_stream_source

    source = resolve_stream_source(settings)
    print(f"stream_ticks: reading the ticks topic with the {source.value} source", flush=True)
    tables = ensure_tables(spark, settings)
    events = parse(read_source(spark, source, settings))
    checkpoints = settings.stream.checkpoint_root.rstrip("/")
    trigger = {"availableNow": True} if available_now else \
        {"processingTime": f"{settings.stream.trigger_seconds} seconds"}
    parquet = (events.where("reason IS NULL")
               .select("event_id", "event_time", "symbol", "price", "size", "bid", "ask", "source",
                       "kafka_partition", "kafka_offset", "date", "hour")
               .writeStream.queryName("ticks_parquet").format("parquet").partitionBy("date", "hour")
               .option("path", Bucket.REALTIME.s3a(REALTIME_TICKS_PREFIX))
               .option("checkpointLocation", f"{checkpoints}/ticks_parquet")
               .trigger(**trigger).start())
    iceberg = (events.writeStream.queryName("ticks_iceberg")
               .foreachBatch(BatchWriter(settings, tables))
               .option("checkpointLocation", f"{checkpoints}/ticks_iceberg")
               .trigger(**trigger).start())
    return source, [parquet, iceberg]


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.clients import s3_client
    from tickerlake.core.spark import build_spark_session

    parser = argparse.ArgumentParser(prog="stream_ticks")
    parser.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--available-now", action="store_true",
                        help="process what is there, then stop (tests, catch-up)")
    args = parser.parse_args(argv)
    settings = get_settings()
    spark = build_spark_session("tickerlake-stream-ticks", settings,
                                {"spark.sql.streaming.stopGracefullyOnShutdown": "true"})
    s3 = s3_client(settings.s3)
    stopping = []
    # SIGTERM (the supervisor's clean stop): finish the loop, stop the queries, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    source, queries = start(spark, settings, available_now=args.available_now)
    started = time.monotonic()
    try:
        while not stopping and any(q.isActive for q in queries):
            for q in queries:
                if q.exception() is not None:
                    raise q.exception()
            write_progress(s3, queries, source)
            if args.run_for is not None and time.monotonic() - started >= args.run_for:
                break
            time.sleep(min(2.0, settings.stream.trigger_seconds))
    finally:
        # Let a micro-batch in flight finish (a replay would be safe, but needless work).
        deadline = time.monotonic() + 60
        while any(q.isActive and q.status.get("isTriggerActive") for q in queries) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        for q in queries:
            q.stop()
        write_progress(s3, queries, source)
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
