"""Benchmark: the streaming lane end to end on this machine, at increasing rates.

    .venv/bin/python -m benchmarks.streaming                       # 100, 300, 1000 events/s, 30 s each
    .venv/bin/python -m benchmarks.streaming --rates 200,2000 --seconds 20

It starts a private stack (nothing shared with `make up`) and, as the supervisor does, the landing
sink and `spark_jobs/stream_ticks.py` (landing-file source: Spark's Kafka connector is not
available here). Then for each rate it replays a synthetic tick tape into Kafka at that rate
(event time = the moment of sending), and polls the realtime Iceberg table `realtime.ticks`
through pyiceberg: each event's produce → queryable latency is the time from its send to the
first poll that sees it in a committed snapshot (poll every `--poll` seconds, so latencies are
rounded up by at most that). Prints per rate: events, sustained events/s (events ÷ time from the
first send to the last event visible), latency p50 / p95 / p99 / max. The baseline the rates are
compared against is the first (lowest) rate, in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC

import numpy as np


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming")
    parser.add_argument("--rates", default="100,300,1000", help="events per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send at each rate")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between Iceberg polls")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to wait for the last event")
    return parser.parse_args()


def send(producer, rate: float, seconds: float, tag: str, sent: dict[str, float]) -> None:
    """Publish at `rate` for `seconds`, recording each event id's send time in `sent`."""
    from datetime import datetime

    from ingestion.producer import SyntheticTicks, paced, publish

    def stamped():
        # Stamped after pacing: an event the pacer pulls but never releases is never "sent".
        for key, value in paced(SyntheticTicks(seed=7).events(), rate, seconds):
            event = json.loads(value)
            now = time.time()
            event.update(event_id=f"{tag}-{len(sent)}", source=tag,
                         event_time=datetime.fromtimestamp(now, UTC).isoformat())
            sent[event["event_id"]] = now
            yield key, json.dumps(event).encode()

    publish(stamped(), producer)


def watch(table, tag: str, sent: dict[str, float], sending_done, poll: float, drain: float) -> dict[str, float]:
    """event id -> wall time it was first seen in the table; polls while the events are being
    sent (a thread), until every sent event is seen or `drain` seconds after sending ended."""
    from pyiceberg.expressions import EqualTo

    seen: dict[str, float] = {}
    snapshot, deadline = None, None
    while True:
        if sending_done.is_set():
            deadline = deadline or time.time() + drain
            if len(seen) >= len(sent) or time.time() > deadline:
                return seen
        table.refresh()
        current = table.current_snapshot()
        if current is not None and current.snapshot_id != snapshot:
            snapshot = current.snapshot_id
            now = time.time()
            ids = table.scan(row_filter=EqualTo("source", tag), selected_fields=("event_id",)).to_arrow()
            for event_id in ids.column("event_id").to_pylist():
                seen.setdefault(event_id, now)
        time.sleep(poll)


def measure(producer, table, rate: float, seconds: float, tag: str, poll: float, drain: float):
    """Send at `rate` while a thread watches the table: (sent, seen) times per event id."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    sent: dict[str, float] = {}
    done = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(watch, table, tag, sent, done, poll, drain)
        try:
            send(producer, rate, seconds, tag, sent)
        finally:
            done.set()
        return sent, watcher.result()


def main() -> int:
    args = parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    from tickerlake.dev.private import private_stack

    with private_stack({"TICKERLAKE_STREAM_TRIGGER_SECONDS": "1", "TICKERLAKE_STREAM_SOURCE": "landing",
                        "TICKERLAKE_SPARK_DRIVER_MEMORY": "2g"}):
        from tickerlake import supervisor
        from tickerlake.core.clients import kafka_producer
        from tickerlake.core.iceberg import iceberg_catalog
        from tickerlake.core.names import Table
        from tickerlake.core.settings import get_settings

        settings = get_settings()
        producer = kafka_producer(settings.kafka)
        results = []
        try:
            for proc in (supervisor.SINK, supervisor.STREAM):
                print(f"{proc.name}: {supervisor.ensure_running(settings, proc)}", flush=True)
            # Warm-up: the job's first batches create the tables and compile the plans.
            warm: dict[str, float] = {}
            send(producer, 50, 5, "warmup", warm)
            catalog, table = iceberg_catalog(settings), None
            deadline = time.time() + 300
            while table is None and time.time() < deadline:
                try:
                    table = catalog.load_table(str(Table.TICKS))
                except Exception:  # noqa: BLE001 - not created yet
                    time.sleep(1)
            if table is None:
                raise SystemExit("the streaming job did not create realtime.ticks within 300 s")
            import threading

            finished = threading.Event()
            finished.set()
            watch(table, "warmup", warm, finished, args.poll, args.drain)
            print("warm-up done", flush=True)
            for rate in rates:
                tag = f"bench-{int(rate)}"
                sent, seen = measure(producer, table, rate, args.seconds, tag, args.poll, args.drain)
                latencies = np.array([seen[e] - sent[e] for e in sent if e in seen])
                span = max(seen.values()) - min(sent.values()) if seen else float("nan")
                results.append((rate, len(sent), len(seen), len(seen) / span if seen else 0.0,
                                *(np.percentile(latencies, [50, 95, 99]) if len(latencies) else [np.nan] * 3),
                                latencies.max() if len(latencies) else np.nan))
                print(f"rate {rate:,.0f}/s: {len(seen):,}/{len(sent):,} visible", flush=True)
        finally:
            producer.close()
            supervisor.stop_proc(settings, supervisor.STREAM)
            supervisor.stop_proc(settings, supervisor.SINK)

    print(f"\n{'offered/s':>10}{'events':>9}{'visible':>9}{'sustained/s':>13}{'p50 s':>8}{'p95 s':>8}"
          f"{'p99 s':>8}{'max s':>8}{'vs first':>10}")
    base = results[0][3] if results and results[0][3] else float("nan")
    for rate, n, visible, sustained, p50, p95, p99, worst in results:
        print(f"{rate:>10,.0f}{n:>9,}{visible:>9,}{sustained:>13,.0f}{p50:>8.1f}{p95:>8.1f}{p99:>8.1f}"
              f"{worst:>8.1f}{sustained / base:>10.2f}")
    print(f"machine: {os.cpu_count()} cores; producer, Kafka, landing sink, Spark (local[2]), S3 and "
          "Postgres all on it; latency resolution: the poll interval "
          f"({args.poll}s) plus one table scan")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
