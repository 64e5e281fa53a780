"""Long-running Spark Structured Streaming job: the ticks topic -> Iceberg `realtime.ticks` and bars.

    python -m spark_jobs.stream_ticks [--run-for SECONDS] [--available-now]

Two queries; the topic is read once, by the first:

1. `ticks` reads the topic with Spark's Kafka source. In the plan: parse the JSON (every field as
   text, then typed, so a wrong type is a reason, not a NULL), then `withWatermark` on the
   record's Kafka timestamp and `dropDuplicatesWithinWatermark(event_id)`: a producer's re-send
   reaches the broker within seconds of the first copy, so bounded RocksDB state of
   TICKERLAKE_STREAM_DEDUP_SECONDS removes it. Its `foreachBatch` is idempotent per batch: every
   commit it makes carries the query id and batch id as snapshot properties, and a batch that is
   already committed is skipped on replay (what Iceberg's own streaming sink does). It
   - archives the batch's records as they came (`s3://raw/archive/ticks/batch_id=N/`, replaced
     on replay): the raw copy a replay or an audit starts from;
   - quarantines malformed events and events older than the event-time watermark into
     `realtime.quarantine_ticks`, with the reason; the watermark is Spark's rule (the latest
     event time of earlier batches minus TICKERLAKE_STREAM_WATERMARK_SECONDS), carried from batch
     to batch in the ticks table's snapshot summary: no scan of any table;
   - appends the rest to `realtime.ticks` (one Iceberg commit).
2. `bars` reads `realtime.ticks` as a stream (Iceberg's streaming source: only new snapshots),
   `withWatermark("event_time")` and a stateful windowed aggregation (RocksDB) into 1-minute
   bars in update mode: each micro-batch MERGEs only the windows that changed into
   `realtime.bars_1m`, then rebuilds the 5-minute windows those belong to from their 1-minute
   bars into `realtime.bars_5m`. Its watermark never passes the first query's, so no tick the
   first query kept is dropped as late here.

Counts (ticks appended, late and malformed quarantined) and both queries' StreamingQueryProgress
go to `s3://realtime/_state/stream_ticks/progress.json` for the supervisor.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tickerlake.core.datasets import LIVE_BARS, QUARANTINE_TICKS, TICK_EVENT, TICKS
from tickerlake.core.errors import one_line_errors
from tickerlake.core.names import ARCHIVE_TICKS_PREFIX, STREAM_STATE_PREFIX, Bucket, Table, Topic
from tickerlake.core.settings import Settings, get_settings

# Every field read as text first: a wrong type is quarantined with its reason, not NULLed.
EVENT_SCHEMA = TICK_EVENT.spark_ddl(as_text=True)
MARKER = "tickerlake.batch"  # snapshot property: "<query id>:<batch id>"
MAX_EVENT_TIME = "tickerlake.max-event-time"  # snapshot property: latest event time so far (µs)
BARS_5M_MINUTES = 5


def read_topic(spark, settings: Settings):
    """The ticks topic's records, read by Spark's Kafka source."""
    from pyspark.sql import functions as F

    raw = (spark.readStream.format("kafka")
           .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
           .option("subscribe", Topic.TICKS.value)
           .option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", settings.stream.max_offsets_per_trigger)
           .load())
    return raw.select(F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
                      F.col("timestamp").alias("kafka_timestamp"), F.col("key").cast("string").alias("key"),
                      F.col("value"))


def parse(records):
    """Typed event columns plus `reason` (NULL when the event is well formed)."""
    from pyspark.sql import functions as F

    text = F.col("value").cast("string")
    parsed = records.withColumn("e", F.from_json(text, EVENT_SCHEMA)).select(
        "kafka_partition", "kafka_offset", "kafka_timestamp", "key", "value",
        F.col("e.event_id").alias("event_id"),
        F.to_timestamp("e.event_time").alias("event_time"),
        F.col("e.symbol").alias("symbol"),
        F.col("e.price").cast("double").alias("price"),
        F.col("e.size").cast("double").cast("bigint").alias("size"),
        F.col("e.bid").cast("double").alias("bid"),
        F.col("e.ask").cast("double").alias("ask"),
        F.col("e.source").alias("source"),
        # from_json is permissive (broken JSON gives a struct of NULLs): ask for the root instead
        F.get_json_object(text, "$").isNull().alias("_not_json"))
    rules = [
        (F.col("_not_json"), "not JSON"),
        (F.col("event_id").isNull(), "missing event_id"),
        (F.col("event_time").isNull(), "missing or unparsable event_time"),
        (F.col("symbol").isNull(), "missing symbol"),
        (F.col("price").isNull() | F.isnan("price"), "missing or unparsable price"),
        (F.col("price") <= 0, "non-positive price"),
        (F.col("size").isNull() | (F.col("size") < 0), "missing or negative size"),
    ]
    reason = F.lit(None).cast("string")
    for condition, message in reversed(rules):
        reason = F.when(condition, F.lit(message)).otherwise(reason)
    return (parsed.withColumn("reason", reason).drop("_not_json")
            .withColumn("date", F.to_date("event_time")).withColumn("hour", F.hour("event_time"))
            # a malformed record has no usable event_id: its place in the topic makes it unique
            .withColumn("dedup_key", F.coalesce("event_id", F.format_string("kafka:%d:%d", "kafka_partition",
                                                                            "kafka_offset"))))


def ensure_tables(spark, settings: Settings) -> dict[Table, str]:
    from tickerlake.core.iceberg import create_declared_table, ensure_namespaces

    ensure_namespaces(spark, settings)
    names = {Table.TICKS: create_declared_table(spark, Table.TICKS, TICKS, settings),
             Table.QUARANTINE_TICKS: create_declared_table(spark, Table.QUARANTINE_TICKS, QUARANTINE_TICKS,
                                                           settings)}
    for table in (Table.LIVE_BARS_1M, Table.LIVE_BARS_5M):
        names[table] = create_declared_table(spark, table, LIVE_BARS, settings)
    return names


def _snapshot_with(table, marker: str | None):
    """The newest snapshot carrying `marker` (any tickerlake batch marker when None)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if MARKER in summary and (marker is None or summary[MARKER] == marker):
            return snapshot, summary
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return None, {}


@dataclass
class Counters:
    """Totals since the job started, reported in the progress file."""

    batches: int = 0
    ticks: int = 0
    late: int = 0
    malformed: int = 0
    skipped_replays: int = 0
    last_commit_at: float | None = None
    bar_windows: int = 0


@dataclass
class TicksWriter:
    """The ticks query's foreachBatch (see the module docstring)."""

    settings: Settings
    tables: dict[Table, str]
    counters: Counters = field(default_factory=Counters)
    query_id: str = ""

    def __call__(self, batch, batch_id: int) -> None:
        from pyspark.sql import functions as F

        from tickerlake.core.iceberg import iceberg_catalog

        catalog = iceberg_catalog(self.settings)
        ticks_table = catalog.load_table(str(Table.TICKS))
        marker = f"{self.query_id}:{batch_id}"
        if _snapshot_with(ticks_table, marker)[0] is not None:
            self.counters.skipped_replays += 1  # committed before a restart: nothing to redo
            return
        previous_max = int(_snapshot_with(ticks_table, None)[1].get(MAX_EVENT_TIME, -1))
        delay_us = self.settings.stream.watermark_seconds * 1_000_000
        watermark_us = previous_max - delay_us if previous_max >= 0 else None
        batch = batch.persist()
        try:
            micros = F.unix_micros("event_time")
            late = F.lit(False) if watermark_us is None else (micros < F.lit(watermark_us))
            classified = batch.withColumn("reason", F.coalesce(
                "reason", F.when(late, F.lit("later than the watermark")))).persist()
            stats = classified.agg(
                F.count(F.lit(1)).alias("rows"),
                F.sum(F.when(F.col("reason").isNull(), 1).otherwise(0)).alias("good"),
                F.sum(F.when(F.col("reason") == "later than the watermark", 1).otherwise(0)).alias("late"),
                F.max(F.when(F.col("reason").isNull(), micros)).alias("max_us")).first()
            if not stats["rows"]:
                return
            self._archive(batch, batch_id)
            bad = stats["rows"] - stats["good"]
            properties = {MARKER: marker}
            if bad:
                (classified.where("reason IS NOT NULL").withColumn("batch_id", F.lit(batch_id))
                 .select(*QUARANTINE_TICKS.column_names).writeTo(self.tables[Table.QUARANTINE_TICKS])
                 .options(**_snapshot_options(properties)).append())
            new_max = max(previous_max, stats["max_us"] if stats["max_us"] is not None else -1)
            (classified.where("reason IS NULL").select(*TICKS.column_names).writeTo(self.tables[Table.TICKS])
             .options(**_snapshot_options({**properties, MAX_EVENT_TIME: str(new_max)})).append())
            self.counters.batches += 1
            self.counters.ticks += stats["good"]
            self.counters.late += stats["late"]
            self.counters.malformed += bad - stats["late"]
            self.counters.last_commit_at = time.time()
        finally:
            batch.unpersist()

    def _archive(self, batch, batch_id: int) -> None:
        """The batch's records as they came, replaced whole on a replay of the same batch."""
        if not self.settings.stream.raw_archive:
            return
        (batch.select("kafka_partition", "kafka_offset", "kafka_timestamp", "key", "value")
         .coalesce(1).write.mode("overwrite")
         .parquet(Bucket.RAW.s3a(ARCHIVE_TICKS_PREFIX, f"batch_id={batch_id}")))


def _snapshot_options(properties: dict[str, str]) -> dict[str, str]:
    return {f"snapshot-property.{k}": v for k, v in properties.items()}


def minute_bars(ticks, watermark_seconds: int):
    """The stateful windowed aggregation: 1-minute OHLCV bars of the ticks stream (or of a batch
    of ticks: the same expressions recompute them from `realtime.ticks`)."""
    from pyspark.sql import functions as F

    order = F.struct("event_time", "kafka_partition", "kafka_offset")
    if ticks.isStreaming:
        ticks = ticks.withWatermark("event_time", f"{watermark_seconds} seconds")
    return (ticks.groupBy("symbol", F.window("event_time", "1 minute").alias("w"))
            .agg(F.min_by("price", order).alias("open"), F.max("price").alias("high"),
                 F.min("price").alias("low"), F.max_by("price", order).alias("close"),
                 F.sum("size").alias("volume"), F.sum(F.col("price") * F.col("size")).alias("_pv"),
                 F.count(F.lit(1)).alias("trades"))
            .select("symbol", F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
                    "open", "high", "low", "close", "volume",
                    (F.col("_pv") / F.col("volume")).alias("vwap"), "trades",
                    F.to_date(F.col("w.start")).alias("date"))
            .select(*LIVE_BARS.column_names))


def bars_from_minutes(minutes, size: int):
    """`size`-minute bars from 1-minute bars (open of the first, close of the last, ...)."""
    from pyspark.sql import functions as F

    seconds = size * 60
    start = F.timestamp_seconds(F.floor(F.unix_seconds("window_start") / seconds) * seconds)
    return (minutes.withColumn("_start", start)
            .groupBy("symbol", "_start")
            .agg(F.min_by("open", "window_start").alias("open"), F.max("high").alias("high"),
                 F.min("low").alias("low"), F.max_by("close", "window_start").alias("close"),
                 F.sum("volume").alias("volume"), F.sum(F.col("vwap") * F.col("volume")).alias("_pv"),
                 F.sum("trades").alias("trades"))
            .select("symbol", F.col("_start").alias("window_start"),
                    (F.col("_start") + F.expr(f"INTERVAL {size} MINUTES")).alias("window_end"),
                    "open", "high", "low", "close", "volume", (F.col("_pv") / F.col("volume")).alias("vwap"),
                    "trades", F.to_date("_start").alias("date"))
            .select(*LIVE_BARS.column_names))


@dataclass
class BarsWriter:
    """The bars query's foreachBatch: the changed 1-minute windows, then their 5-minute windows."""

    tables: dict[Table, str]
    counters: Counters

    def __call__(self, changed, batch_id: int) -> None:
        from pyspark.sql import functions as F

        spark = changed.sparkSession
        changed = changed.persist()
        try:
            days = [r.date for r in changed.select("date").distinct().collect()]
            if not days:
                return
            self.counters.bar_windows += _merge(changed, self.tables[Table.LIVE_BARS_1M], days)
            seconds = BARS_5M_MINUTES * 60
            five = F.timestamp_seconds(F.floor(F.unix_seconds("window_start") / seconds) * seconds)
            touched = changed.select("symbol", five.alias("_start")).distinct()
            minutes = (spark.table(self.tables[Table.LIVE_BARS_1M]).where(F.col("date").isin(days))
                       .withColumn("_start", five).join(touched, ["symbol", "_start"]).drop("_start"))
            _merge(bars_from_minutes(minutes, BARS_5M_MINUTES), self.tables[Table.LIVE_BARS_5M], days)
        finally:
            changed.unpersist()


def _merge(rows, table: str, days: list) -> int:
    """MERGE bar rows on (symbol, window_start); the target is pruned to the rows' dates."""
    import itertools

    view = f"tickerlake_bars_{next(_views)}"
    rows.createOrReplaceTempView(view)
    dates = ", ".join(f"DATE'{d.isoformat()}'" for d in days)
    rows.sparkSession.sql(
        f"MERGE INTO {table} t USING {view} s ON t.date IN ({dates}) AND t.date = s.date "
        "AND t.symbol = s.symbol AND t.window_start = s.window_start "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    rows.sparkSession.catalog.dropTempView(view)
    del itertools
    return rows.count()


_views = iter(range(1, 1 << 62))


def write_progress(s3, queries, counters: Counters) -> None:
    progress: dict[str, Any] = {q.name: q.lastProgress for q in queries}
    body = json.dumps({"written_at": time.time(), "source": "kafka", "queries": progress,
                       "counters": counters.__dict__}, default=str)
    s3.put_object(Bucket=Bucket.REALTIME.value, Key=f"{STREAM_STATE_PREFIX}/progress.json", Body=body.encode())


def _trigger(settings: Settings, available_now: bool) -> dict[str, Any]:
    return {"availableNow": True} if available_now else \
        {"processingTime": f"{settings.stream.trigger_seconds} seconds"}


def start_ticks(spark, settings: Settings, tables: dict[Table, str], counters: Counters, *,
                available_now: bool = False):
    """The query that reads the topic (see the module docstring)."""
    checkpoints = settings.stream.checkpoint_root.rstrip("/")
    trigger = _trigger(settings, available_now)
    events = parse(read_topic(spark, settings))
    deduped = (events.withWatermark("kafka_timestamp", f"{settings.stream.dedup_seconds} seconds")
               .dropDuplicatesWithinWatermark(["dedup_key"]))
    writer = TicksWriter(settings, tables, counters)
    query = (deduped.writeStream.queryName("ticks").foreachBatch(writer)
             .option("checkpointLocation", f"{checkpoints}/ticks").trigger(**trigger).start())
    writer.query_id = str(query.id)  # stable across restarts from the same checkpoint
    return query


def start_bars(spark, settings: Settings, tables: dict[Table, str], counters: Counters, *,
               available_now: bool = False):
    """The query that keeps the bars (see the module docstring)."""
    checkpoints = settings.stream.checkpoint_root.rstrip("/")
    trigger = _trigger(settings, available_now)
    ticks_stream = (spark.readStream.format("iceberg")
                    .option("streaming-skip-overwrite-snapshots", "true")
                    .option("streaming-skip-delete-snapshots", "true")
                    .load(tables[Table.TICKS]))
    return (minute_bars(ticks_stream, settings.stream.watermark_seconds)
            .writeStream.queryName("bars").outputMode("update")
            .foreachBatch(BarsWriter(tables, counters))
            .option("checkpointLocation", f"{checkpoints}/bars").trigger(**trigger).start())


def run_available_now(spark, settings: Settings, s3) -> Counters:
    """Catch up with the topic, then stop: the ticks first, then the bars of every tick in."""
    tables, counters = ensure_tables(spark, settings), Counters()
    queries = [start_ticks(spark, settings, tables, counters, available_now=True)]
    queries[0].awaitTermination()
    queries.append(start_bars(spark, settings, tables, counters, available_now=True))
    queries[1].awaitTermination()
    write_progress(s3, queries, counters)
    for query in queries:
        if query.exception() is not None:
            raise query.exception()
    return counters


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.clients import s3_client
    from tickerlake.core.spark import build_spark_session, require_kafka_connector, streaming_conf

    parser = argparse.ArgumentParser(prog="stream_ticks")
    parser.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--available-now", action="store_true",
                        help="process what is there, then stop (tests, catch-up)")
    args = parser.parse_args(argv)
    settings = get_settings()
    spark = build_spark_session("tickerlake-stream-ticks", settings, streaming_conf(settings))
    s3 = s3_client(settings.s3)
    stopping: list[bool] = []
    # SIGTERM (the supervisor's clean stop): finish the loop, stop the queries, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    require_kafka_connector(settings)
    print("stream_ticks: reading the ticks topic with Spark's Kafka source", flush=True)
    if args.available_now:
        try:
            counters = run_available_now(spark, settings, s3)
        finally:
            spark.stop()
        print("stream_ticks: caught up " + json.dumps(counters.__dict__), flush=True)
        return 0
    tables, counters = ensure_tables(spark, settings), Counters()
    queries = [start_ticks(spark, settings, tables, counters), start_bars(spark, settings, tables, counters)]
    started = time.monotonic()
    try:
        while not stopping and any(q.isActive for q in queries):
            for q in queries:
                if q.exception() is not None:
                    raise q.exception()
            write_progress(s3, queries, counters)
            if args.run_for is not None and time.monotonic() - started >= args.run_for:
                break
            time.sleep(min(1.0, settings.stream.trigger_seconds))
    finally:
        # A clean stop: the ticks query finishes its micro-batch in flight (a replay would be safe,
        # but needless work), then the bars take in every tick committed, so that a stopped stream
        # leaves bars that equal a recompute from the ticks.
        ticks_query, bars_query = queries
        deadline = time.monotonic() + 60
        while ticks_query.isActive and ticks_query.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.2)
        ticks_query.stop()
        if bars_query.isActive and ticks_query.exception() is None:
            bars_query.processAllAvailable()
        bars_query.stop()
        write_progress(s3, queries, counters)
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
