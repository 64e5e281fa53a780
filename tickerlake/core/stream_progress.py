"""What the streaming job reports about itself, read by its supervisor, the exporter and the
dashboard: the progress file the job rewrites after each micro-batch, and the topic's lag behind
the offsets that progress says were committed."""
from __future__ import annotations

import json
from pathlib import Path

from tickerlake.core.names import STREAM_STATE_PREFIX, Bucket, Topic
from tickerlake.core.settings import Settings

PROGRESS_KEY = f"{STREAM_STATE_PREFIX}/progress.json"
STREAM_JOB = "stream_ticks"  # the streaming job's process name (its PID file and log)


def pid_path(settings: Settings, name: str) -> Path:
    """Where the supervisor keeps the PID file of a streaming process (the job, the producer)."""
    return settings.stack.state_dir / "stream" / "pids" / f"{name}.pid"


def read_progress(s3) -> dict | None:
    try:
        body = s3.get_object(Bucket=Bucket.REALTIME.value, Key=PROGRESS_KEY)["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body.read())


def ready_since(progress: dict | None, since: float) -> bool:
    """The job's progress file says it is ready (warmed up, both queries running), written at or
    after `since`: by a job started then, not an earlier one."""
    progress = progress or {}
    return bool(progress.get("ready")) and float(progress.get("written_at") or 0) >= since


def kafka_lag(settings: Settings, positions: dict[int, int], consumer=None) -> dict[int, int]:
    """Records in the topic past `positions` (the next offset to read), per partition; with a
    consumer of the caller's (kept open between calls), else one of its own for this call."""
    from kafka import TopicPartition

    from tickerlake.core.clients import kafka_consumer

    own = consumer is None
    consumer = consumer or kafka_consumer(settings.kafka, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(Topic.TICKS.value) or set()
        ends = consumer.end_offsets([TopicPartition(Topic.TICKS.value, p) for p in partitions])
    finally:
        if own:
            consumer.close()
    return {tp.partition: end - positions.get(tp.partition, 0) for tp, end in ends.items()}


TICKS_QUERY = "ticks"  # the job's query that reads the topic (spark_jobs/stream_ticks.py)


def kafka_source_positions(progress: dict | None) -> dict[int, int]:
    """The next offset per partition the job has committed, from its progress.

    StreamingQueryProgress.sources[i].endOffset of Spark's Kafka source is
    {"topic": {"partition": next_offset}} (a JSON string or an object, by Spark version)."""
    query = ((progress or {}).get("queries", {}).get(TICKS_QUERY) or {})
    for source in query.get("sources") or []:
        end = source.get("endOffset")
        if isinstance(end, str):
            try:
                end = json.loads(end)
            except ValueError:
                continue
        if isinstance(end, dict) and Topic.TICKS.value in end:
            return {int(p): int(o) for p, o in end[Topic.TICKS.value].items()}
    return {}


