"""Long-running Spark Structured Streaming job: the ticks topic -> Iceberg `realtime.ticks` and bars.

    python -m spark_jobs.stream_ticks [--run-for SECONDS] [--available-now]

Two queries; the topic is read once, by the first:

1. `ticks` reads the topic with Spark's Kafka source. In the plan: parse the JSON (every field as
   text, then typed, so a wrong type is a reason, not a NULL; a record that is not a JSON object
   is kept whole in the parser's corrupt-record field), then `withWatermark` on the record's
   Kafka timestamp and `dropDuplicatesWithinWatermark(event_id)`: a producer's re-send reaches
   the broker within seconds of the first copy, so bounded RocksDB state of
   TICKERLAKE_STREAM_DEDUP_SECONDS removes it. Its `foreachBatch` runs one Spark job that brings
   the micro-batch to the driver as Arrow, and makes every write from there (pyiceberg, boto3):
   for micro-batches of thousands of rows a Spark write job costs more than the rows. It is
   idempotent per batch: every commit carries the query id and batch id as snapshot properties,
   and a batch that is already committed is skipped on replay (what Iceberg's own streaming sink
   does). It
   - archives the batch's records as they came (`s3://raw/archive/ticks/batch_id=N/`, one
     Parquet object, replaced on replay): the raw copy a replay or an audit starts from;
   - quarantines malformed events and events older than the event-time watermark into
     `realtime.quarantine_ticks`, with the reason; the watermark is Spark's rule (the latest
     event time of earlier batches minus TICKERLAKE_STREAM_WATERMARK_SECONDS), carried from batch
     to batch in the ticks table's snapshot summary: no scan of any table;
   - appends the rest to `realtime.ticks` (one Iceberg commit).
2. `bars` reads `realtime.ticks` as a stream (Iceberg's streaming source: only new snapshots),
   `withWatermark("event_time")` and a stateful windowed aggregation (RocksDB) into 1-minute
   bars in update mode: each micro-batch upserts only the windows that changed into
   `realtime.bars_1m` (pyiceberg, from the driver: a few rows), then rebuilds the 5-minute
   windows those belong to from their 1-minute bars into `realtime.bars_5m`. Its watermark never
   passes the first query's, so no tick the first query kept is dropped as late here.

Counts (ticks appended, late and malformed quarantined) and both queries' StreamingQueryProgress
go to `s3://realtime/_state/stream_ticks/progress.json` for the supervisor.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tickerlake.core.datasets import LIVE_BARS, QUARANTINE_TICKS, TICK_EVENT, TICKS
from tickerlake.core.errors import one_line_errors
from tickerlake.core.lease import Lease, LeaseLost
from tickerlake.core.names import ARCHIVE_TICKS_PREFIX, STREAM_STATE_PREFIX, SYMBOL_PATTERN, Bucket, Table, Topic
from tickerlake.core.settings import Settings, checkpoint_root, get_settings
from tickerlake.core.stream_progress import PROGRESS_KEY, STREAM_JOB

if TYPE_CHECKING:
    import pyarrow as pa

# Every field read as text first: a wrong type is quarantined with its reason, not NULLed. A
# record that is not one JSON object (strictly: no bare NaN/Infinity) lands whole in `_corrupt`.
CORRUPT = "_corrupt"
EVENT_SCHEMA = f"{TICK_EVENT.spark_ddl(as_text=True)}, `{CORRUPT}` STRING"
JSON_OPTIONS = {"columnNameOfCorruptRecord": CORRUPT, "allowNonNumericNumbers": "false"}
MARKER = "tickerlake.batch"  # snapshot property: "<query id>:<batch id>"
MAX_EVENT_TIME = "tickerlake.max-event-time"  # snapshot property: latest event time so far (µs)
LEASE_TOKEN = "tickerlake.lease-token"  # snapshot property: the writer's fencing token
BARS_5M_MINUTES = 5
MAX_ID_LENGTH = 128
QUERY_RETRY_SECONDS = 120  # how long a failing query is started again in-process (see `restarted`)
QUERY_RETRY_PAUSE_SECONDS = 2.0
EARLIEST_EVENT_TIME = "1980-01-01"  # a replayed tape may be old; an event from before this is not


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


def parse(records, max_future_seconds: int = 300):
    """Typed event columns plus `reason` (NULL when the event is well formed). The first rule
    that matches is the reason; a NULL condition (a missing bid) matches nothing."""
    from pyspark.sql import functions as F

    text = F.col("value").cast("string")
    parsed = records.withColumn("e", F.from_json(text, EVENT_SCHEMA, JSON_OPTIONS)).select(
        "kafka_partition", "kafka_offset", "kafka_timestamp", "key", "value",
        F.col("e.event_id").alias("event_id"),
        F.to_timestamp("e.event_time").alias("event_time"),
        F.col("e.symbol").alias("symbol"),
        F.col("e.price").cast("double").alias("price"),
        F.col("e.size").cast("double").cast("bigint").alias("size"),
        F.col("e.bid").cast("double").alias("bid"),
        F.col("e.ask").cast("double").alias("ask"),
        F.col("e.source").alias("source"),
        # one parse: from_json keeps what is not a JSON object in the corrupt-record field
        (F.col("e").isNull() | F.col(f"e.{CORRUPT}").isNotNull()).alias("_not_json"))
    rules = [
        (F.col("_not_json"), "not JSON"),
        (F.col("event_id").isNull(), "missing event_id"),
        (F.col("event_time").isNull(), "missing or unparsable event_time"),
        (F.col("symbol").isNull(), "missing symbol"),
        (F.col("event_time") > F.col("kafka_timestamp") + F.expr(f"INTERVAL {max_future_seconds} SECONDS"),
         f"event_time more than {max_future_seconds}s after the broker received it"),
        (F.col("event_time") < F.lit(EARLIEST_EVENT_TIME).cast("timestamp"),
         f"event_time before {EARLIEST_EVENT_TIME}"),
        (~F.col("symbol").rlike(SYMBOL_PATTERN), "invalid symbol"),
        (F.length("event_id") > MAX_ID_LENGTH, f"event_id longer than {MAX_ID_LENGTH} characters"),
        (F.col("source").isNull(), "missing source"),
        (F.length("source") > MAX_ID_LENGTH, f"source longer than {MAX_ID_LENGTH} characters"),
        (F.col("price").isNull() | F.isnan("price") | (F.abs("price") == float("inf")), "missing or unparsable price"),
        (F.col("price") <= 0, "non-positive price"),
        (F.col("size").isNull() | (F.col("size") < 0), "missing or negative size"),
        (F.isnan("bid") | F.isnan("ask") | (F.abs("bid") == float("inf")) | (F.abs("ask") == float("inf")),
         "unparsable bid or ask"),
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
    catalog = shared_catalog(settings)
    if all(catalog.table_exists(str(t)) for t in (Table.TICKS, Table.QUARANTINE_TICKS, Table.LIVE_BARS_1M,
                                                  Table.LIVE_BARS_5M)):
        # a restart: nothing to create (each CREATE ... IF NOT EXISTS costs a Spark SQL round)
        return {t: f"{settings.iceberg.catalog}.{t}" for t in (Table.TICKS, Table.QUARANTINE_TICKS,
                                                                Table.LIVE_BARS_1M, Table.LIVE_BARS_5M)}
    # Each micro-batch is small and mostly one partition: no shuffle before a write. Every table
    # stays copy-on-write (no delete files): the warehouse load reads committed data files.
    fast = {"write.distribution-mode": "none", "write.merge.distribution-mode": "none"}
    bars = fast
    names = {Table.TICKS: create_declared_table(spark, Table.TICKS, TICKS, settings, fast),
             Table.QUARANTINE_TICKS: create_declared_table(spark, Table.QUARANTINE_TICKS, QUARANTINE_TICKS,
                                                           settings, fast)}
    for table in (Table.LIVE_BARS_1M, Table.LIVE_BARS_5M):
        names[table] = create_declared_table(spark, table, LIVE_BARS, settings, bars)
    return names


def warm_up(spark, settings: Settings, tables: dict[Table, str]) -> float:
    """Pay the first micro-batch's one-off costs before any event waits on them: the parser's, the
    statistics' and the bars' expressions run once on one made-up record (code generation, the
    JSON and regex machinery, the Arrow collection), `realtime.ticks` is opened through Spark (the
    bars query's Iceberg source: JDBC catalog, S3A, Iceberg's classes), every table through
    pyiceberg (the writers' catalog and file IO, which also writes a scratch object under the
    job's state prefix). Nothing reaches a table. Measured: a cold job's first micro-batch spent
    8.3 s in its writer, a warm one's 2.2 s. Returns the seconds spent."""
    from datetime import UTC, datetime

    import pyarrow as pa
    from pyspark.sql import functions as F

    began = time.perf_counter()
    record = json.dumps({"event_id": "warm-up", "event_time": datetime.now(UTC).isoformat(), "symbol": "WARM",
                         "price": 1.0, "size": 1, "bid": 1.0, "ask": 1.0, "source": "warm-up"}).encode()
    sample = spark.createDataFrame(
        [(0, 0, datetime.now(UTC), "WARM", bytearray(record))],
        "kafka_partition INT, kafka_offset LONG, kafka_timestamp TIMESTAMP, key STRING, value BINARY")
    events = parse(sample, settings.stream.max_future_seconds)
    collect_arrow(events.select(*[F.col(c).alias(f"raw_{c}") for c in RAW_COLUMNS], *TICKS.column_names, "reason"))
    minute_bars(events.where("reason IS NULL"), settings.stream.watermark_seconds).collect()
    five_minute_bars(pa.Table.from_pylist([], schema=LIVE_BARS.arrow_schema()))
    spark.table(tables[Table.TICKS]).limit(1).collect()
    catalog = shared_catalog(settings)
    for table in tables:
        opened = catalog.load_table(str(table))
        opened.scan(limit=1).to_arrow()
    with opened.io.new_output(Bucket.REALTIME.s3a(STREAM_STATE_PREFIX, "warm-up.txt")).create(overwrite=True) as out:
        out.write(b"warm")
    return time.perf_counter() - began


def _marked_snapshots(table):
    """(query id, batch id, summary) of the table's snapshots this job committed, newest first
    (snapshots of other writers, such as compaction, are passed over)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if MARKER in summary:
            query_id, _, batch = summary[MARKER].rpartition(":")
            yield query_id, int(batch), summary
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None


def committed(table, query_id: str, batch_id: int) -> bool:
    """Did this query commit this batch to the table? Looks only at the newest snapshot this job
    marked: batches commit in order, and only the batch after the last commit can be replayed."""
    for query, batch, _ in _marked_snapshots(table):
        return query == query_id and batch >= batch_id
    return False


def latest_summary(table) -> dict[str, str]:
    """The summary of the newest snapshot this job committed ({} for a new table)."""
    return next((summary for _, _, summary in _marked_snapshots(table)), {})


_catalog: dict[str, Any] = {}


def warm_catalog(settings: Settings) -> None:
    """Build pyiceberg's catalog (imports and a SQLAlchemy engine: seconds) in a thread, while the
    Spark session starts, instead of in the first micro-batch."""
    from concurrent.futures import ThreadPoolExecutor

    from tickerlake.core.iceberg import iceberg_catalog

    if "future" not in _catalog:
        _catalog["future"] = ThreadPoolExecutor(1, thread_name_prefix="tickerlake-catalog").submit(
            iceberg_catalog, settings)


def shared_catalog(settings: Settings):
    """The job's one pyiceberg catalog."""
    warm_catalog(settings)
    return _catalog["future"].result()


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
    # The latest ticks micro-batches: [batch id, records read, seconds, committed at (epoch s),
    # {stage: seconds}, [send-to-commit latency at LATENCY_QUANTILES]] (event time = send time).
    recent_batches: list[list[Any]] = field(default_factory=list)
    recent_bar_batches: list[list[Any]] = field(default_factory=list)
    steps: int = 0  # stages of the writers finished (part of the activity the stall rule reads)

    def batch_done(self, batch_id: int, rows: int, seconds: float, stages: dict[str, float],
                   latencies: list[float]) -> None:
        self.recent_batches.append([batch_id, rows, round(seconds, 3), round(time.time(), 3),
                                    {k: round(v, 3) for k, v in stages.items()}, latencies])
        del self.recent_batches[:-300]


LATE = "later than the watermark"
RAW_COLUMNS = ["kafka_partition", "kafka_offset", "kafka_timestamp", "key", "value"]  # the archive's
COMMIT_ATTEMPTS = 5  # a commit that lost a race (maintenance, a compaction) is tried again


def collect_arrow(frame) -> "pa.Table | None":
    """The frame's rows on the driver as one Arrow table (None when it has none). Spark 3.5 has no
    public `DataFrame.toArrow` (4.0 has); `_collect_as_arrow` is what its `toPandas` uses."""
    import pyarrow as pa

    batches = frame._collect_as_arrow()
    table = pa.Table.from_batches(batches) if batches else None
    return table if table is not None and table.num_rows else None


def quarantine_rows(rejected: "pa.Table", batch_id: int) -> "pa.Table":
    """The quarantine table's rows for the rejected records: where each came from, its text, why.
    A record that is not UTF-8 keeps its text with U+FFFD for the bytes that are not (the
    archive keeps the bytes)."""
    import pyarrow as pa

    values = rejected.column("raw_value")
    try:
        text = values.cast(pa.string())
    except pa.ArrowInvalid:
        text = pa.array([None if v is None else v.decode("utf-8", "replace") for v in values.to_pylist()],
                        pa.string())
    columns = {"kafka_partition": rejected.column("raw_kafka_partition"),
               "kafka_offset": rejected.column("raw_kafka_offset"), "value": text,
               "reason": rejected.column("reason"), "batch_id": pa.array([batch_id] * rejected.num_rows, pa.int64())}
    return pa.table(columns).select(QUARANTINE_TICKS.column_names).cast(QUARANTINE_TICKS.arrow_schema())


def append_marked(table, rows: "pa.Table", properties: dict[str, str], query_id: str, batch_id: int) -> None:
    """One Iceberg append of a batch's rows from the driver (pyiceberg), marked with the query
    and batch id. Iceberg's own streaming sink does the same through Spark; for batches of
    thousands of rows a Spark write job costs more than the rows. A commit that lost a race to
    another writer is retried on the refreshed table, unless the batch is in already."""
    from pyiceberg.exceptions import CommitFailedException
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    for attempt in Retrying(retry=retry_if_exception_type(CommitFailedException), reraise=True,
                            stop=stop_after_attempt(COMMIT_ATTEMPTS), wait=wait_exponential(0.2, max=3)):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                table.refresh()
                if committed(table, query_id, batch_id):
                    return
            table.append(rows, snapshot_properties=properties)


# Quantiles of each batch's event times, turned into send-to-commit latencies after the commit.
LATENCY_QUANTILES = [round(0.05 * i, 2) for i in range(1, 19)] + [0.91, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0]


@dataclass
class TicksWriter:
    """The ticks query's foreachBatch (see the module docstring)."""

    settings: Settings
    tables: dict[Table, str]
    counters: Counters = field(default_factory=Counters)
    query_id: str = ""
    lease: Lease | None = None
    _s3_client: Any = None

    def catalog(self):
        return shared_catalog(self.settings)  # one SQLAlchemy engine for the job's life

    def __call__(self, batch, batch_id: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark.sql import functions as F

        began = time.perf_counter()
        stages: dict[str, float] = {}
        clock = [began]

        def lap(stage: str) -> None:
            now = time.perf_counter()
            stages[stage] = stages.get(stage, 0.0) + now - clock[0]
            clock[0] = now
            self.counters.steps += 1

        catalog = self.catalog()
        ticks_table = catalog.load_table(str(Table.TICKS))
        marker = f"{self.query_id}:{batch_id}"
        if committed(ticks_table, self.query_id, batch_id):
            # Committed before a restart: nothing to redo, but the archive written beside the
            # commit may be missing if the job died in between.
            self.counters.skipped_replays += 1
            if not self._archived(batch_id):
                self._archive_replay(batch, batch_id)
            return
        latest = latest_summary(ticks_table)
        previous_max = int(latest.get(MAX_EVENT_TIME, -1))
        token = self.lease.token if self.lease is not None else None
        if token is not None and int(latest.get(LEASE_TOKEN, 0)) > token:
            raise LeaseLost(f"realtime.ticks was committed under lease token {latest[LEASE_TOKEN]}, "
                            f"newer than this job's {token}: a newer holder runs; stopping")
        lap("catalog")
        delay_us = self.settings.stream.watermark_seconds * 1_000_000
        watermark_us = previous_max - delay_us if previous_max >= 0 else None
        micros = F.unix_micros("event_time")
        late = F.lit(False) if watermark_us is None else (micros < F.lit(watermark_us))
        classified = batch.withColumn("reason", F.coalesce("reason", F.when(late, F.lit(LATE))))
        # One Spark job reads, parses and deduplicates the batch and brings it to the driver as
        # Arrow: every record as it came (the archive, the quarantine), its parsed tick and its
        # reason. Counts, watermark and latency quantiles are computed there, and every commit is
        # made from there: nothing is cached or computed twice.
        # (plain columns: a `CASE WHEN reason IS NULL` per column would make Spark evaluate the
        # rules once per column, as the optimizer inlines `reason` into each)
        arrow = collect_arrow(classified.select(
            *[F.col(c).alias(f"raw_{c}") for c in RAW_COLUMNS], *TICKS.column_names, "reason"))
        lap("read_parse_dedup")
        if arrow is None:
            return
        records = arrow.select([f"raw_{c}" for c in RAW_COLUMNS]).rename_columns(RAW_COLUMNS)
        reasons = arrow.column("reason")
        ticks = arrow.filter(pc.is_null(reasons)).select(TICKS.column_names)
        rows, good = arrow.num_rows, ticks.num_rows
        late_rows = pc.sum(pc.equal(reasons, LATE)).as_py() or 0
        event_us = pc.cast(ticks.column("event_time"), pa.int64())
        max_us = pc.max(event_us).as_py() if good else None
        properties = {MARKER: marker}
        if token is not None:
            properties[LEASE_TOKEN] = str(token)
        if self.lease is not None:
            self.lease.fence()  # still the holder, renewed right before the commits
        bad = rows - good

        def quarantine() -> None:
            table = catalog.load_table(str(Table.QUARANTINE_TICKS))
            # an attempt killed between the two commits left the quarantine's in: not again
            if bad and not committed(table, self.query_id, batch_id):
                rejected = arrow.filter(pc.is_valid(reasons))
                append_marked(table, quarantine_rows(rejected, batch_id), properties, self.query_id, batch_id)

        # The archive and the quarantine are written beside the ticks' commit, not before it:
        # the ticks become visible as soon as their own commit is done.
        with ThreadPoolExecutor(2, thread_name_prefix="tickerlake-side") as side:
            writes = [side.submit(self._archive, records, batch_id), side.submit(quarantine)]
            new_max = max(previous_max, max_us if max_us is not None else -1)
            append_marked(ticks_table, ticks.cast(TICKS.arrow_schema()),
                          {**properties, MAX_EVENT_TIME: str(new_max)}, self.query_id, batch_id)
            committed_at = time.time()
            lap("commit_ticks")
            for write in writes:
                write.result()
            lap("archive_quarantine_wait")
        # the event-time quantile 1-q is the latency quantile q (the oldest event waited longest)
        event_q = pc.quantile(event_us, q=[1 - q for q in reversed(LATENCY_QUANTILES)],
                              interpolation="lower").to_pylist() if good else []
        latencies = [round(committed_at - e / 1e6, 3) for e in reversed(event_q)]
        self.counters.batches += 1
        self.counters.ticks += good
        self.counters.late += late_rows
        self.counters.malformed += bad - late_rows
        self.counters.last_commit_at = committed_at
        self.counters.batch_done(batch_id, rows, time.perf_counter() - began, stages, latencies)

    def _archive_key(self, batch_id: int) -> str:
        return f"{ARCHIVE_TICKS_PREFIX}/batch_id={batch_id}/part-00000.parquet"

    def _s3(self):
        if self._s3_client is None:
            from tickerlake.core.clients import s3_client

            self._s3_client = s3_client(self.settings.s3)
        return self._s3_client

    def _archived(self, batch_id: int) -> bool:
        if not self.settings.stream.raw_archive:
            return True
        try:
            self._s3().head_object(Bucket=Bucket.RAW.value, Key=self._archive_key(batch_id))
            return True
        except Exception:  # noqa: BLE001 - botocore's 404 ClientError: not written yet
            return False

    def _archive(self, records: "pa.Table | None", batch_id: int) -> None:
        """The batch's records as they came (RAW_COLUMNS), one Parquet object put in one request
        (so it exists whole or not at all), replaced on a replay of the same batch."""
        if not self.settings.stream.raw_archive or records is None:
            return
        import io

        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(records, sink, compression="zstd")
        self._s3().put_object(Bucket=Bucket.RAW.value, Key=self._archive_key(batch_id), Body=sink.getvalue())

    def _archive_replay(self, batch, batch_id: int) -> None:
        """A committed batch replayed after a restart whose archive is missing: write it now (and
        drop what an older version's Spark writer may have left under the batch's prefix)."""
        from tickerlake.core.s3 import iter_keys

        prefix = f"{ARCHIVE_TICKS_PREFIX}/batch_id={batch_id}/"
        for key in list(iter_keys(self._s3(), Bucket.RAW.value, prefix)):
            self._s3().delete_object(Bucket=Bucket.RAW.value, Key=key)
        self._archive(collect_arrow(batch.select(*RAW_COLUMNS)), batch_id)


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


def five_minute_bars(minutes: "pa.Table") -> "pa.Table":
    """5-minute bars from 1-minute bars (open of the first, close of the last, ...), in Arrow."""
    import pandas as pd
    import pyarrow as pa

    frame = minutes.to_pandas().sort_values(["symbol", "window_start"])
    frame["_start"] = frame["window_start"].dt.floor(f"{BARS_5M_MINUTES}min")
    frame["_pv"] = frame["vwap"] * frame["volume"]
    grouped = frame.groupby(["symbol", "_start"], sort=True)
    out = pd.DataFrame({
        "open": grouped["open"].first(), "high": grouped["high"].max(), "low": grouped["low"].min(),
        "close": grouped["close"].last(), "volume": grouped["volume"].sum(), "_pv": grouped["_pv"].sum(),
        "trades": grouped["trades"].sum()}).reset_index()
    out["window_start"] = out["_start"]
    out["window_end"] = out["_start"] + pd.Timedelta(minutes=BARS_5M_MINUTES)
    out["vwap"] = out["_pv"] / out["volume"]
    out["date"] = out["_start"].dt.date
    return pa.Table.from_pandas(out[LIVE_BARS.column_names], schema=LIVE_BARS.arrow_schema(), preserve_index=False)


@dataclass
class BarsWriter:
    """The bars query's foreachBatch: the changed 1-minute windows (a few rows per symbol), upserted
    from the driver with pyiceberg, then their 5-minute windows rebuilt from the 1-minute bars.
    No Spark MERGE: on these cores one costs seconds, the upsert of a few hundred rows does not."""

    settings: Settings
    counters: Counters
    lease: Lease | None = None

    def __call__(self, changed, batch_id: int) -> None:
        import pyarrow as pa
        from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, In, LessThan

        began = time.perf_counter()
        rows = changed.collect()
        if not rows:
            return
        if self.lease is not None:
            self.lease.fence()
        catalog = shared_catalog(self.settings)
        schema = LIVE_BARS.arrow_schema()
        minutes = pa.Table.from_pylist([r.asDict() for r in rows], schema=schema)
        bars_1m = catalog.load_table(str(Table.LIVE_BARS_1M))
        bars_1m.upsert(minutes, join_cols=list(LIVE_BARS.keys))
        merged_1m = time.perf_counter()
        # the 5-minute windows the changed minutes belong to, from all their 1-minute bars
        seconds = BARS_5M_MINUTES * 60
        starts = sorted({(r.symbol, int(r.window_start.timestamp()) // seconds * seconds) for r in rows})
        lo, hi = min(s for _, s in starts), max(s for _, s in starts) + seconds
        import datetime as dt

        def ts(epoch: int) -> str:
            return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()

        # pyiceberg's expressions are pydantic models whose constructors mypy cannot read
        window = And(In("symbol", {sym for sym, _ in starts}),  # type: ignore[call-arg,arg-type]
                     And(GreaterThanOrEqual("window_start", ts(lo)),  # type: ignore[call-arg,arg-type]
                         LessThan("window_start", ts(hi))))  # type: ignore[call-arg,arg-type]
        days = {r.date for r in rows}
        if len(days) == 1:
            window = And(EqualTo("date", next(iter(days)).isoformat()), window)  # type: ignore[call-arg,arg-type]
        around = bars_1m.refresh().scan(row_filter=window).to_arrow()
        five = five_minute_bars(around)
        keep = {(sym, s) for sym, s in starts}
        five = five.filter(pa.array([(sym, int(w.timestamp()) // seconds * seconds) in keep
                                     for sym, w in zip(five["symbol"].to_pylist(), five["window_start"].to_pylist())]))
        catalog.load_table(str(Table.LIVE_BARS_5M)).upsert(five, join_cols=list(LIVE_BARS.keys))
        self.counters.bar_windows += len(rows)
        self.counters.recent_bar_batches.append([batch_id, len(rows), round(merged_1m - began, 3),
                                                 round(time.perf_counter() - merged_1m, 3), round(time.time(), 3)])
        del self.counters.recent_bar_batches[:-100]


@dataclass
class Activity:
    """A number that grows while a micro-batch makes progress: the Spark tasks completed (the
    status tracker's active stages; a finished stage's count is kept) plus the writers' finished
    steps. The supervisor tells a slow batch (it grows) from a stuck one (it does not)."""

    finished: int = 0
    live: dict[int, int] = field(default_factory=dict)

    def sample(self, spark, counters: Counters) -> int:
        tracker = spark.sparkContext.statusTracker()
        active = set(tracker.getActiveStageIds())
        for stage in [s for s in self.live if s not in active]:
            self.finished += self.live.pop(stage)
        for stage in active:
            info = tracker.getStageInfo(stage)
            if info is not None:
                self.live[stage] = info.numCompletedTasks
        return self.finished + sum(self.live.values()) + counters.steps


def write_progress(s3, queries, counters: Counters, activity: int | None = None, ready: bool = False) -> None:
    """`ready`: warmed up, both queries running and the ticks query through its first trigger:
    an event sent now is handled by a warm job (the supervisor starts the demo producer then)."""
    progress: dict[str, Any] = {q.name: q.lastProgress for q in queries}
    body = json.dumps({"written_at": time.time(), "source": "kafka", "queries": progress, "ready": ready,
                       "activity": activity, "counters": counters.__dict__}, default=str)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.put_object(Bucket=Bucket.REALTIME.value, Key=PROGRESS_KEY, Body=body.encode())
    except (BotoCoreError, ClientError) as exc:
        # S3 restarting: the queries go on (their own writes retry); the next report will land.
        # A driver silent for longer than the stall limit is restarted by the supervisor.
        print(f"stream_ticks: progress not written ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)


def _trigger(settings: Settings, available_now: bool) -> dict[str, Any]:
    return {"availableNow": True} if available_now else \
        {"processingTime": f"{settings.stream.trigger_seconds} seconds"}


def start_ticks(spark, settings: Settings, tables: dict[Table, str], counters: Counters, *,
                available_now: bool = False, lease: Lease | None = None):
    """The query that reads the topic (see the module docstring)."""
    checkpoints = checkpoint_root(settings)
    trigger = _trigger(settings, available_now)
    events = parse(read_topic(spark, settings), settings.stream.max_future_seconds)
    deduped = (events.withWatermark("kafka_timestamp", f"{settings.stream.dedup_seconds} seconds")
               .dropDuplicatesWithinWatermark(["dedup_key"]))
    writer = TicksWriter(settings, tables, counters, lease=lease)
    query = (deduped.writeStream.queryName("ticks").foreachBatch(writer)
             .option("checkpointLocation", f"{checkpoints}/ticks").trigger(**trigger).start())
    writer.query_id = str(query.id)  # stable across restarts from the same checkpoint
    return query


def start_bars(spark, settings: Settings, tables: dict[Table, str], counters: Counters, *,
               available_now: bool = False, lease: Lease | None = None):
    """The query that keeps the bars (see the module docstring)."""
    checkpoints = checkpoint_root(settings)
    trigger = {"availableNow": True} if available_now else \
        {"processingTime": f"{settings.stream.bars_trigger_seconds} seconds"}
    ticks_stream = (spark.readStream.format("iceberg")
                    .option("streaming-skip-overwrite-snapshots", "true")
                    .option("streaming-skip-delete-snapshots", "true")
                    .load(tables[Table.TICKS]))
    return (minute_bars(ticks_stream, settings.stream.watermark_seconds)
            .writeStream.queryName("bars").outputMode("update")
            .foreachBatch(BarsWriter(settings, counters, lease))
            .option("checkpointLocation", f"{checkpoints}/bars").trigger(**trigger).start())


def run_available_now(spark, settings: Settings, s3, lease: Lease | None = None) -> Counters:
    """Catch up with the topic, then stop: the ticks first, then the bars of every tick in."""
    tables, counters = ensure_tables(spark, settings), Counters()
    queries = [start_ticks(spark, settings, tables, counters, available_now=True, lease=lease)]
    queries[0].awaitTermination()
    queries.append(start_bars(spark, settings, tables, counters, available_now=True, lease=lease))
    queries[1].awaitTermination()
    write_progress(s3, queries, counters)
    for query in queries:
        if query.exception() is not None:
            raise query.exception()
    return counters


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from tickerlake.core.spark import build_spark_session, require_kafka_connector, streaming_conf

    parser = argparse.ArgumentParser(prog="stream_ticks")
    parser.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--available-now", action="store_true",
                        help="process what is there, then stop (tests, catch-up)")
    args = parser.parse_args(argv)
    settings = get_settings()
    require_kafka_connector(settings)
    warm_catalog(settings)
    lease = Lease(settings, STREAM_JOB, settings.stream.lease_seconds, on_lost=_lost_lease)
    # Wait for a killed holder's lease to expire while the Spark session starts; nothing is
    # written before it is ours.
    with ThreadPoolExecutor(1, thread_name_prefix="tickerlake-lease") as pool:
        taking = pool.submit(lease.acquire, settings.stream.lease_seconds + 5)
        spark = build_spark_session("tickerlake-stream-ticks", settings, streaming_conf(settings))
        token = taking.result()
    try:
        return _run(spark, settings, lease, token, args)
    finally:
        lease.release()


def _lost_lease(reason: str) -> None:
    """A holder whose lease is gone must stop writing at once: exit, do not finish the batch."""
    print(f"stream_ticks: error: {reason}", file=sys.stderr, flush=True)
    os._exit(75)


def failure_reason(text: str) -> str:
    """The root cause in a query's failure text (a Python traceback around a Java one): the last
    `Class: message` line that is not py4j's wrapping, cut to one line."""
    causes = [m for m in _CAUSE.finditer(text) if not m.group(1).startswith("py4j.")]
    return f"{causes[-1].group(1)}: {causes[-1].group(2).strip()}"[:300] if causes else ""


_CAUSE = re.compile(r"^(?:Caused by: |: )?([\w.$]+(?:Error|Exception)): (.+)$", re.MULTILINE)


def restarted(query, start, failing_since: dict[str, float]):
    """A query that failed, started again from its checkpoint in this Spark session.

    Why: a fault under a running job (S3 or Postgres restarting) fails the micro-batch in flight
    and with it the query; a new job would cost half a minute of JVM, session and state-store
    start, a query restart a few seconds. Both queries' batches are idempotent, so the replay
    doubles nothing. A lost lease is never retried, and a query failing for longer than
    QUERY_RETRY_SECONDS ends the job: the supervisor's next round starts a new one."""
    error = query.exception()
    reason = failure_reason(str(error)) or type(error).__name__
    first = failing_since.setdefault(query.name, time.monotonic())
    if "LeaseLost" in str(error) or time.monotonic() - first > QUERY_RETRY_SECONDS:
        raise error
    print(f"stream_ticks: the {query.name} query failed ({reason}); starting it again from its checkpoint",
          file=sys.stderr, flush=True)
    time.sleep(QUERY_RETRY_PAUSE_SECONDS)
    try:
        return start()
    except Exception as exc:  # noqa: BLE001 - the service is still down: the next round tries again
        print(f"stream_ticks: the {query.name} query could not start yet ({type(exc).__name__})",
              file=sys.stderr, flush=True)
        return query


def _run(spark, settings: Settings, lease: Lease, token: int, args) -> int:
    from tickerlake.core.clients import s3_client

    s3 = s3_client(settings.s3)
    stopping: list[bool] = []
    # SIGTERM (the supervisor's clean stop): finish the loop, stop the queries, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"stream_ticks: reading the ticks topic with Spark's Kafka source (lease token {token})", flush=True)
    if args.available_now:
        try:
            counters = run_available_now(spark, settings, s3, lease)
        finally:
            spark.stop()
        print("stream_ticks: caught up " + json.dumps(counters.__dict__), flush=True)
        return 0
    tables, counters = ensure_tables(spark, settings), Counters()
    print(f"stream_ticks: warmed up in {warm_up(spark, settings, tables):.1f}s", flush=True)
    queries = [start_ticks(spark, settings, tables, counters, lease=lease)]
    # The bars query starts once the ticks query's first micro-batch is in: on two cores their
    # first batches (plan compilation, state stores, writers) would otherwise slow each other down.
    deadline = time.monotonic() + 120
    while queries[0].isActive and queries[0].lastProgress is None and time.monotonic() < deadline:
        time.sleep(0.2)
    queries.append(start_bars(spark, settings, tables, counters, lease=lease))
    starters = {"ticks": lambda: start_ticks(spark, settings, tables, counters, lease=lease),
                "bars": lambda: start_bars(spark, settings, tables, counters, lease=lease)}
    failing_since: dict[str, float] = {}
    started, activity = time.monotonic(), Activity()
    try:
        while not stopping and any(q.isActive or q.exception() is not None for q in queries):
            for i, q in enumerate(queries):
                if q.exception() is not None:
                    queries[i] = restarted(q, starters[q.name], failing_since)
                elif q.lastProgress is not None:
                    failing_since.pop(q.name, None)  # it ran a trigger: the fault is over
            ready = all(q.isActive for q in queries) and queries[0].lastProgress is not None
            write_progress(s3, queries, counters, activity.sample(spark, counters), ready)
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
