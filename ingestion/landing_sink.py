"""Land the ticks topic's records in the raw bucket, exactly once: the Kafka source for machines
where Spark's own Kafka connector cannot be had.

    python -m ingestion.landing_sink [--max-records 5000] [--max-seconds 5] [--idle-exit SECONDS]

Each object holds one partition's consecutive records, named by their offset range:
`s3://raw/landing/ticks/partition=P/<first>-<last>.jsonl`. The object names are the ledger:

- on start, the sink lists them and seeks each partition to (highest last offset + 1), so what is
  durable in the lake decides where to resume, not the consumer group's committed offsets;
- an object is written with one PUT (atomic on S3: it exists whole or not at all), and only then
  are the offsets committed to the consumer group (for lag monitoring);
- killed at any point (even SIGKILL), a restart neither skips nor repeats a record: records not
  yet in an object were never counted as landed.

One sink per topic: the supervisor holds the lock that keeps a second copy from starting.
Records are kept raw (malformed ones too): the streaming job validates and quarantines them.
"""
from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import time
from dataclasses import dataclass, field

from tickerlake.core.errors import one_line_errors
from tickerlake.core.landing import durable_positions
from tickerlake.core.names import Bucket, Topic, landing_key


@dataclass
class PartitionBuffer:
    records: list = field(default_factory=list)
    since: float = 0.0


def encode(record) -> str:
    value = record.value or b""
    try:
        payload = {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        payload = {"value_base64": base64.b64encode(value).decode()}  # kept, not lost
    return json.dumps({
        "partition": record.partition, "offset": record.offset, "kafka_timestamp": record.timestamp,
        "key": record.key.decode("utf-8", "replace") if record.key else None, **payload,
    }, separators=(",", ":"))


class LandingSink:
    def __init__(self, kafka_settings, s3, *, topic: str = Topic.TICKS.value,
                 group_id: str = "tickerlake-landing", max_records: int = 5000, max_seconds: float = 5.0):
        self.kafka_settings, self.s3, self.topic, self.group_id = kafka_settings, s3, topic, group_id
        self.max_records, self.max_seconds = max_records, max_seconds
        self.stopping = False
        self.landed_objects = 0
        self.landed_records = 0

    def stop(self, *_):
        self.stopping = True

    def run(self, *, idle_exit: float | None = None, run_for: float | None = None) -> None:
        """Land records until stopped (SIGTERM/SIGINT), idle for `idle_exit` s, or `run_for` s."""
        from kafka import TopicPartition

        from tickerlake.core.clients import kafka_consumer

        consumer = kafka_consumer(self.kafka_settings, group_id=self.group_id)
        try:
            partitions = sorted(consumer.partitions_for_topic(self.topic) or [])
            if not partitions:
                raise RuntimeError(f"topic {self.topic} does not exist (run python -m minio_init)")
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            positions = durable_positions(self.s3)
            for tp in tps:
                if tp.partition in positions:
                    consumer.seek(tp, positions[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
            buffers = {p: PartitionBuffer() for p in partitions}
            started = last_record = time.monotonic()
            while not self.stopping:
                polled = consumer.poll(timeout_ms=500, max_records=self.max_records)
                now = time.monotonic()
                for tp, records in polled.items():
                    buffer = buffers[tp.partition]
                    if records and not buffer.records:
                        buffer.since = now
                    buffer.records.extend(records)
                    last_record = now
                for partition, buffer in buffers.items():
                    if buffer.records and (len(buffer.records) >= self.max_records
                                           or now - buffer.since >= self.max_seconds):
                        self._land(consumer, partition, buffer)
                if idle_exit is not None and now - last_record >= idle_exit:
                    break
                if run_for is not None and now - started >= run_for:
                    break
            for partition, buffer in buffers.items():  # a clean stop lands what it holds
                if buffer.records:
                    self._land(consumer, partition, buffer)
        finally:
            consumer.close(autocommit=False)

    def _land(self, consumer, partition: int, buffer: PartitionBuffer) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        records = buffer.records
        first, last = records[0].offset, records[-1].offset
        body = ("\n".join(encode(r) for r in records) + "\n").encode()
        self.s3.put_object(Bucket=Bucket.RAW.value, Key=landing_key(partition, first, last), Body=body,
                           ContentType="application/x-ndjson")
        # Only after the object is durable: the committed offset is for lag monitoring.
        consumer.commit({TopicPartition(self.topic, partition): OffsetAndMetadata(last + 1, "", -1)})
        self.landed_objects += 1
        self.landed_records += len(records)
        buffer.records = []


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.clients import s3_client
    from tickerlake.core.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m ingestion.landing_sink")
    parser.add_argument("--max-records", type=int, default=5000, help="records per object, at most")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="oldest buffered record's age, at most")
    parser.add_argument("--idle-exit", type=float, default=None, help="exit after this long without records")
    args = parser.parse_args(argv)
    settings = get_settings()
    sink = LandingSink(settings.kafka, s3_client(settings.s3), max_records=args.max_records,
                       max_seconds=args.max_seconds)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    sink.run(idle_exit=args.idle_exit)
    print(f"landed {sink.landed_records} records in {sink.landed_objects} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
