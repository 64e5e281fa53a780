"""Benchmark: the streaming lane on this machine (producer, Kafka, Spark, S3 and Postgres all on it).

    .venv/bin/python -m benchmarks.streaming                         # everything below, ~15 min
    .venv/bin/python -m benchmarks.streaming --phases latency --rates 1000,5000

On a private stack (nothing shared with `make up`), with the job started as the supervisor
starts it (`spark_jobs/stream_ticks.py`, Spark's Kafka source):

- producer: the synthetic producer alone into Kafka (no job running): its events/s, so that it is
  known not to be the bottleneck;
- throughput: the topic filled beforehand with `--fill` events, then the job catches up: events/s
  = events / (last batch's end - first batch's start), from the job's own batch records; the
  producer is not in the loop. The baseline in the same run is the producer alone;
- latency: at each fixed offered rate, for `--seconds`, with the producer running: each event's
  time from its send (its event_time is stamped at sending) to the commit of the Iceberg snapshot
  that made it visible (the snapshot's own timestamp, so no polling error): p50 / p95 / p99, and
  the sustained rate; lag growing (events not visible `--drain` s after sending stopped) marks
  the saturation point;
- soak: `--soak` events at `--soak-rate` (a simulated trading session): the micro-batch duration
  over the first and the last 10% of its batches;
- CPU share of each process group (producer, broker, Spark, S3, Postgres) per phase, as a share
  of the machine's cores (psutil).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from datetime import UTC, datetime

import numpy as np
import psutil


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming")
    parser.add_argument("--phases", default="producer,throughput,latency,soak")
    parser.add_argument("--fill", type=int, default=600_000, help="events in the topic before a catch-up")
    parser.add_argument("--rates", default="1000,5000,10000", help="offered events/s for the latency phase")
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds of sending per rate")
    parser.add_argument("--soak", type=int, default=2_000_000, help="events in the soak")
    parser.add_argument("--soak-rate", type=float, default=10_000.0)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last event")
    parser.add_argument("--trigger", type=float, default=1.0, help="TICKERLAKE_STREAM_TRIGGER_SECONDS")
    parser.add_argument("--max-offsets", type=int, default=200_000, help="TICKERLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER")
    parser.add_argument("--no-archive", action="store_true", help="TICKERLAKE_STREAM_RAW_ARCHIVE=false")
    parser.add_argument("--shuffle-partitions", type=int, default=2,
                        help="TICKERLAKE_SPARK_SHUFFLE_PARTITIONS: the state stores of the dedup and the bars")
    return parser.parse_args()


SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")
PRODUCERS = 2  # producer processes: one kafka-python producer sends ~10k events/s on these cores


def records(count: int | None, tag: str, worker: int = 0):
    """Synthetic ticks (a random walk per symbol), each stamped with its send time and the run's
    tag as `source`; formatted directly (this benchmark's producer must outrun the job)."""
    rng = np.random.default_rng(7 + worker)
    prices = {s: 20.0 + 40 * i for i, s in enumerate(SYMBOLS)}
    n = 0
    while count is None or n < count:
        picks = rng.integers(len(SYMBOLS), size=4096)
        steps = np.exp(rng.normal(0, 0.0005, size=4096))
        sizes = rng.integers(1, 500, size=4096)
        for pick, step, size in zip(picks, steps, sizes):
            if count is not None and n >= count:
                return
            symbol = SYMBOLS[pick]
            price = prices[symbol] = prices[symbol] * float(step)
            n += 1
            yield symbol.encode(), (
                f'{{"event_id":"{tag}-{worker}-{n}","event_time":"{datetime.now(UTC).isoformat()}",'
                f'"symbol":"{symbol}","price":{price:.4f},"size":{size},"bid":{price * 0.9998:.4f},'
                f'"ask":{price * 1.0002:.4f},"source":"{tag}"}}').encode()


def _send_worker(tag: str, worker: int, count: int | None, rate: float | None, seconds: float | None) -> int:
    from ingestion.producer import paced
    from ingestion.producer import publish as send
    from tickerlake.core.clients import kafka_producer
    from tickerlake.core.settings import get_settings

    stream = records(count, tag, worker)
    if rate:
        stream = paced(stream, rate, seconds)
    producer = kafka_producer(get_settings().kafka, {"linger.ms": 20, "batch.size": 512 * 1024})
    return send(stream, producer)


def publish(tag: str, count: int | None = None, rate: float | None = None, seconds: float | None = None,
            workers: int = PRODUCERS) -> int:
    """Send from `workers` processes, each a share of `count` and of `rate`; events sent."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shares = [None if count is None else count // workers + (i < count % workers) for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_send_worker, tag, i, shares[i], rate / workers if rate else None, seconds)
                   for i in range(workers)]
        return sum(f.result() for f in futures)


class Cpu:
    """CPU seconds of each process group over a phase, as a share of the machine's cores."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups  # "producer" is this process and its pool, without the Spark job it started
        self.started = time.monotonic()
        self.before = {name: self._seconds(pids) for name, pids in groups.items()}

    def _seconds(self, pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            try:
                process = psutil.Process(pid)
                if pid == os.getpid():
                    # this process and its producer workers, which have exited (and been waited
                    # for) by the end of a phase; the Spark job it started is counted apart
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
                    continue
                for p in [process, *process.children(recursive=True)]:
                    times = p.cpu_times()
                    total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def shares(self) -> dict[str, float]:
        wall = (time.monotonic() - self.started) * (os.cpu_count() or 1)
        return {name: (self._seconds(pids) - self.before[name]) / wall for name, pids in self.groups.items()}


def progress(s3) -> dict:
    from tickerlake.core.names import STREAM_STATE_PREFIX, Bucket

    try:
        body = s3.get_object(Bucket=Bucket.REALTIME.value, Key=f"{STREAM_STATE_PREFIX}/progress.json")["Body"]
    except s3.exceptions.NoSuchKey:
        return {}
    return json.loads(body.read())


def total_ticks(catalog) -> int:
    """Rows in realtime.ticks, from its current snapshot's summary (no scan)."""
    from tickerlake.core.names import Table

    if not catalog.table_exists(str(Table.TICKS)):
        return 0
    snapshot = catalog.load_table(str(Table.TICKS)).current_snapshot()
    return int(snapshot.summary.get("total-records") or 0) if snapshot and snapshot.summary else 0


def wait_for(catalog, target: int, drain: float) -> int:
    """Poll (once a second: a poll parses the table's metadata) until `target` rows are in."""
    deadline = time.time() + drain
    while (count := total_ticks(catalog)) < target and time.time() < deadline:
        time.sleep(1)
    return count


def batch_latencies(batches: list[list]) -> np.ndarray:
    """Send-to-commit latencies of the batches' events, rebuilt from each batch's quantiles (the
    job records them from the events' send-time stamps and its commit time)."""
    from spark_jobs.stream_ticks import LATENCY_QUANTILES

    values, weights = [], []
    for batch in batches:
        rows, latencies = batch[1], batch[5]
        previous = 0.0
        for q, latency in zip(LATENCY_QUANTILES, latencies):
            values.append(latency)
            weights.append((q - previous) * rows)
            previous = q
    if not values:
        return np.array([])
    order = np.argsort(values)
    sorted_values, cumulative = np.array(values)[order], np.cumsum(np.array(weights)[order])
    return np.interp(np.linspace(0, cumulative[-1], 2001), cumulative, sorted_values)


def batches_since(s3, first_batch: int) -> list[list]:
    time.sleep(3)  # the job writes its progress file every second
    return [b for b in progress(s3).get("counters", {}).get("recent_batches", []) if b[0] > first_batch and b[1] > 0]


def last_batch(s3) -> int:
    return max([b[0] for b in progress(s3).get("counters", {}).get("recent_batches", [])] or [-1])


def stage_means(batches: list[list]) -> str:
    stages: dict[str, list[float]] = {}
    for batch in batches:
        for stage, seconds in batch[4].items():
            stages.setdefault(stage, []).append(seconds)
    return ", ".join(f"{k} {statistics.mean(v):.2f}" for k, v in stages.items())


def cycles(batches: list[list]) -> str:
    """Seconds between consecutive commits (the cycle an event waits through) and in the batches'
    foreachBatch: where they differ, the time went to Spark's own per-trigger work or the other
    query."""
    ends = [b[3] for b in batches]
    gaps = np.diff(ends) if len(ends) > 1 else np.array([float("nan")])
    busy = [b[2] for b in batches] or [float("nan")]
    return (f"commit every {np.mean(gaps):.2f}s (max {np.max(gaps):.2f}s), "
            f"foreachBatch {np.mean(busy):.2f}s (max {np.max(busy):.2f}s)")


def percentiles(values: np.ndarray) -> tuple[float, float, float]:
    if not len(values):
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def main() -> int:
    args = parse_args()
    # A SIGTERM stops the stack it started (by PID) instead of leaving its services behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    phases = set(args.phases.split(","))
    from tickerlake.dev.private import private_stack

    env = {"TICKERLAKE_STREAM_TRIGGER_SECONDS": str(args.trigger), "TICKERLAKE_SPARK_DRIVER_MEMORY": "3g",
           "TICKERLAKE_STREAM_MAX_OFFSETS_PER_TRIGGER": str(args.max_offsets),
           "TICKERLAKE_KAFKA_TICKS_PARTITIONS": "2",
           "TICKERLAKE_SPARK_SHUFFLE_PARTITIONS": str(args.shuffle_partitions),
           "TICKERLAKE_STREAM_RAW_ARCHIVE": str(not args.no_archive).lower()}
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with private_stack(env) as services:
        from tickerlake.core.clients import s3_client
        from tickerlake.core.iceberg import iceberg_catalog
        from tickerlake.core.settings import get_settings
        from tickerlake.streaming import supervisor

        settings = get_settings()
        s3 = s3_client(settings.s3)
        groups = {"producer": [os.getpid()],
                  **{s.name: [s.pid_file.running_pid() or 0] for s in services}}
        catalog = iceberg_catalog(settings)
        producer_rate = float("nan")
        if phases & {"producer", "throughput"}:
            cpu = Cpu(groups)
            started = time.perf_counter()
            sent = publish("fill", args.fill)
            producer_rate = sent / (time.perf_counter() - started)
            say(f"producer alone (no job): {sent:,} events at {producer_rate:,.0f}/s "
                f"({PRODUCERS} processes)   cpu {_shares(cpu.shares())}")

        print(f"stream_ticks: {supervisor.ensure_running(settings, supervisor.STREAM)}", flush=True)
        groups["spark"] = [supervisor.running(settings, supervisor.STREAM) or 0]
        try:
            deadline = time.time() + 300
            while not catalog.table_exists("realtime.ticks") and time.time() < deadline:
                time.sleep(1)
            if phases & {"producer", "throughput"}:
                cpu = Cpu(groups)
                count = wait_for(catalog, args.fill, drain=900)
                batches = batches_since(s3, -1)
                rows = sum(b[1] for b in batches)
                span = batches[-1][3] - (batches[0][3] - batches[0][2]) if batches else float("nan")
                say(f"catch-up over a filled topic: {count:,} visible; {rows:,} read in {len(batches)} batches "
                    f"over {span:.1f}s = {rows / span:,.0f}/s (x{rows / span / producer_rate:.2f} the producer "
                    f"alone); mean stage seconds: {stage_means(batches)}   cpu {_shares(cpu.shares())}")
            else:  # warm-up: the first batches compile the plans
                publish("warmup", 2000)
                wait_for(catalog, 2000, drain=300)

            if "latency" in phases:
                for rate in [float(r) for r in args.rates.split(",")]:
                    before, first = total_ticks(catalog), last_batch(s3)
                    cpu = Cpu(groups)
                    started = time.perf_counter()
                    sent = publish(f"rate{int(rate)}", rate=rate, seconds=args.seconds)
                    elapsed = time.perf_counter() - started
                    visible = wait_for(catalog, before + sent, args.drain) - before
                    shares = cpu.shares()
                    batches = batches_since(s3, first)
                    p50, p95, p99 = percentiles(batch_latencies(batches))
                    lag = " LAG GROWS (saturated)" if visible < sent else ""
                    say(f"offered {rate:>7,.0f}/s: sent {sent / elapsed:>7,.0f}/s, visible {visible:,}/{sent:,} "
                        f"in {len(batches)} batches; send-to-commit p50 {p50:.2f}s p95 {p95:.2f}s p99 {p99:.2f}s"
                        f"{lag}; {cycles(batches)}; stages {stage_means(batches)}   cpu {_shares(shares)}")

            if "soak" in phases:
                before, first = total_ticks(catalog), last_batch(s3)
                cpu = Cpu(groups)
                started = time.perf_counter()
                sent = publish("soak", args.soak, rate=args.soak_rate)
                elapsed = time.perf_counter() - started
                visible = wait_for(catalog, before + sent, args.drain) - before
                shares = cpu.shares()
                batches = batches_since(s3, first)
                tenth = max(1, len(batches) // 10)
                head = statistics.mean(b[2] for b in batches[:tenth]) if batches else float("nan")
                tail = statistics.mean(b[2] for b in batches[-tenth:]) if batches else float("nan")
                p50, p95, p99 = percentiles(batch_latencies(batches))
                say(f"soak: {sent:,} events at {sent / elapsed:,.0f}/s, {visible:,} visible, {len(batches)} batches; "
                    f"batch seconds first 10% {head:.2f}, last 10% {tail:.2f} (x{tail / head:.2f}); "
                    f"p50 {p50:.2f}s p99 {p99:.2f}s   cpu {_shares(shares)}")
        finally:
            supervisor.stop_proc(settings, supervisor.STREAM)

    print(f"\n== results ({os.cpu_count()} cores; producer, broker, Spark, S3 and Postgres all on it) ==")
    for line in lines:
        print(line)
    return 0


def _shares(shares: dict[str, float]) -> str:
    return " ".join(f"{name} {share:.0%}" for name, share in shares.items())


if __name__ == "__main__":
    raise SystemExit(main())
