"""`make chaos`: faults under a running stream, on a private stack; what each cost, in a table.

    python -m tickerlake.dev.chaos [--profile ci|full|kills] [--seed N]

On a stack of its own (free ports, a temporary state directory, stopped by PID at the end) it
runs the streaming lane as production does: a producer publishing synthetic ticks at a steady
rate, supervision rounds every few seconds (the `stream_supervisor` DAG's work, called in a
thread), the job holding its lease. In a seeded random order it then restarts the broker, the S3
store and Postgres (each a clean stop and start of the real service) and SIGKILLs the stream
job's process group at random points of its micro-batches. After each fault it waits until the
job commits new batches again: that is the fault's recovery time.

The end state is judged against what a clean run writes, which here is fixed by the input: every
event the broker acknowledged is in `realtime.ticks` exactly once with the values it was sent with,
the quarantine holds exactly the malformed and the too-late ones (none, but in the `kills`
profile), and the 1-minute bars equal a batch recompute from the ticks
(spark_jobs/compare_bars.py). The `full` profile then SIGKILLs the batch tasks (backfill,
transform, warehouse load) and compares their tables with a clean run's (tickerlake.dev.chaos_batch).

Bounded: every wait has a deadline, and the run stops itself (exit 1 when a fault was not
recovered or an event was lost or doubled).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from tickerlake.core.errors import one_line_errors

log = logging.getLogger("tickerlake.chaos")


class Fault(StrEnum):
    RESTART_KAFKA = "restart kafka"
    RESTART_S3 = "restart s3"
    RESTART_POSTGRES = "restart postgres"
    KILL_STREAM = "SIGKILL stream job"
    KILL_BACKFILL = "SIGKILL backfill"
    KILL_TRANSFORM = "SIGKILL transform"
    KILL_LOAD = "SIGKILL warehouse load"


@dataclass(frozen=True)
class Profile:
    """How much chaos: the stream faults (each restart `restarts` times, `stream_kills` SIGKILLs),
    the producer's rate, and whether the batch tasks are killed too."""

    name: str
    restarts: int
    stream_kills: int
    rate: float
    batch: bool
    recover_timeout: float = 240.0
    events: int = 0  # the producer goes on after the faults until this many are acknowledged
    malformed_every: int = 0  # every n-th event malformed (ingestion.producer.SyntheticTicks)
    late_every: int = 0  # every n-th event, once the job has committed, back-dated past the watermark

    def stream_faults(self, rng: random.Random) -> list[Fault]:
        faults = [Fault.RESTART_KAFKA, Fault.RESTART_S3, Fault.RESTART_POSTGRES] * self.restarts
        faults += [Fault.KILL_STREAM] * self.stream_kills
        rng.shuffle(faults)
        return faults


PROFILES = {
    # the suite's variant: each service restarted once, the stream killed three times
    "ci": Profile("ci", restarts=1, stream_kills=3, rate=150.0, batch=False),
    "full": Profile("full", restarts=2, stream_kills=5, rate=300.0, batch=True),
    # exactly once under SIGKILLs alone: ten kills in a run of at least 200,000 events, with
    # malformed and too-late ones, which must be in the quarantine and nowhere else
    "kills": Profile("kills", restarts=0, stream_kills=10, rate=600.0, batch=False, events=200_000,
                     malformed_every=97, late_every=89),
}

# The chaos stack's own settings: 1 s triggers, and a killed job's lease frees after 10 s.
CHAOS_ENV = {"TICKERLAKE_STREAM_TRIGGER_SECONDS": "1", "TICKERLAKE_STREAM_LEASE_SECONDS": "10",
             "TICKERLAKE_SPARK_DRIVER_MEMORY": "1g"}


@dataclass
class Outcome:
    fault: Fault
    at: float  # seconds since the chaos began
    recovered: bool
    seconds: float | None  # from the fault until the job committed new batches again
    detail: str = ""
    job_kept: bool | None = None  # the same stream job recovered (no new process was needed)
    lost: int = 0  # lost events acknowledged from the fault until it recovered


@dataclass
class Verdict:
    acknowledged: int
    rows: int
    lost: int
    duplicated: int
    changed: int  # in the table with other values than it was sent with
    unexpected: int  # in the table but never sent
    quarantined: int
    bar_differences: int
    resends: int
    quarantine_expected: int = 0  # the malformed and the too-late events acknowledged
    quarantine_unexplained: int = 0  # rows that are neither, or twice the same record or event
    late: int = 0  # events sent too late (after the job's first commits)
    malformed: int = 0  # malformed records acknowledged
    lost_window: tuple[float, float] | None = None  # when the lost events were acknowledged (s since start)
    outcomes: list[Outcome] = field(default_factory=list)
    batch: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (all(o.recovered for o in self.outcomes) and not (self.lost or self.duplicated or self.changed
                or self.unexpected or self.quarantine_unexplained or self.bar_differences)
                and self.quarantined == self.quarantine_expected
                and all(row["lost"] == row["duplicated"] == row["changed"] == 0 for row in self.batch))

    def table(self) -> str:
        lines = [f"{'fault':<24} {'at s':>6} {'recovered':>9} {'s to recover':>12} {'lost':>5}  detail"]
        for o in self.outcomes:
            seconds = f"{o.seconds:.1f}" if o.seconds is not None else "-"
            lines.append(f"{o.fault.value:<24} {o.at:>6.0f} {'yes' if o.recovered else 'NO':>9} {seconds:>12} "
                         f"{o.lost:>5}  {o.detail}")
        lines.append("")
        lines.append(f"stream: {self.acknowledged} events (and {self.malformed} malformed records) acknowledged "
                     f"by the broker, {self.rows} rows in "
                     f"realtime.ticks: lost {self.lost}, duplicated {self.duplicated}, changed {self.changed}, "
                     f"never sent {self.unexpected}; quarantined {self.quarantined} (expected "
                     f"{self.quarantine_expected}: the malformed, and {self.late} events sent too late; unexplained "
                     f"{self.quarantine_unexplained}); producer re-sends "
                     f"{self.resends}; 1-minute bars differing from a batch recompute: {self.bar_differences}")
        if self.lost_window:
            lines.append(f"the lost events were acknowledged between {self.lost_window[0]:.1f}s and "
                         f"{self.lost_window[1]:.1f}s (the fault column's clock)")
        for row in self.batch:
            lines.append(f"batch {row['table']:<28} rows {row['rows']:>7} (clean run {row['clean_rows']:>7}): "
                         f"lost {row['lost']}, duplicated {row['duplicated']}, changed {row['changed']}")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


class Producer(threading.Thread):
    """The demo producer's synthetic ticks at a steady rate, keeping every acknowledged event.

    A send the broker did not acknowledge (it was restarting) is sent again with the same event id,
    as a real producer's retry would: the job's dedup must make it count once."""

    def __init__(self, settings, rate: float, seed: int, malformed_every: int = 0, late_every: int = 0) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        from ingestion.producer import SyntheticTicks

        self.settings, self.rate, self.late_every = settings, rate, late_every
        self.events = SyntheticTicks(seed=seed, malformed_every=malformed_every).events()
        self.generated = 0
        self.late_ids: set[str] = set()  # back-dated past the watermark before they were sent
        self.late_from = threading.Event()  # set once the job has committed (a watermark exists)
        self.malformed_acked = 0  # acknowledged records the job must quarantine as malformed
        self.acked: dict[str, dict] = {}
        self.acked_at: dict[str, float] = {}  # monotonic time of each acknowledgement
        self.resends = 0
        self.retry: list[tuple[bytes, bytes]] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def _producer(self):
        from tickerlake.core.clients import kafka_producer

        # short timeouts: a send during a broker restart fails fast and is retried by us
        return kafka_producer(self.settings.kafka, {"request.timeout.ms": 5000, "message.timeout.ms": 15000,
                                                    "reconnect.backoff.max.ms": 1000})

    def run(self) -> None:
        from tickerlake.core.names import Topic

        producer, started, n = None, time.monotonic(), 0
        while not (self.stopping.is_set() and not self.retry and not self.in_flight):
            try:
                producer = producer or self._producer()
            except Exception as exc:  # noqa: BLE001 - the broker is restarting: try again
                log.info("producer: no broker yet (%s)", type(exc).__name__)
                time.sleep(0.5)
                continue
            with self._lock:
                batch, self.retry = self.retry, []
            self.resends += len(batch)
            if not self.stopping.is_set():
                due = int((time.monotonic() - started) * self.rate) - n
                batch += [self._next() for _ in range(max(0, due))]
                n += max(0, due)
            for key, value in batch:
                try:
                    producer.produce(Topic.TICKS.value, key=key, value=value,
                                     on_delivery=lambda error, _m, k=key, v=value: self._delivered(error, k, v))
                except BufferError:  # the local queue is full: again later
                    with self._lock:
                        self.retry.append((key, value))
                    continue
                with self._lock:
                    self.in_flight += 1
            producer.poll(0.05)  # serves the delivery callbacks
        if producer is not None:
            producer.flush(10)

    def _next(self) -> tuple[bytes, bytes]:
        key, value = next(self.events)
        self.generated += 1
        if self.late_every and self.late_from.is_set() and self.generated % self.late_every == 0:
            event = _event(value)
            if event is not None:  # a well-formed event, an hour older than it is
                event["event_time"] = (datetime.fromisoformat(event["event_time"]) - timedelta(hours=1)).isoformat()
                self.late_ids.add(event["event_id"])
                value = json.dumps(event).encode()
        return key, value

    def _delivered(self, error, key: bytes, value: bytes) -> None:
        if error is not None:
            self._failed(key, value)
        else:
            self._acked(value)

    def _acked(self, value: bytes) -> None:
        event = _event(value)
        if event is None:
            with self._lock:
                self.malformed_acked += 1
                self.in_flight -= 1
            return
        with self._lock:
            self.acked[event["event_id"]] = event
            self.acked_at[event["event_id"]] = time.monotonic()
            self.in_flight -= 1

    def _failed(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self.retry.append((key, value))
            self.in_flight -= 1

    def stop(self) -> None:
        """Stop generating; send the unacknowledged again until every one is acknowledged (bounded:
        the thread is a daemon, and what was never acknowledged is not counted as sent)."""
        self.stopping.set()
        self.join(timeout=90)


def _event(value: bytes) -> dict | None:
    """The event a record carries, None for the malformed ones SyntheticTicks makes (not JSON, no
    price, a price that is not positive): what the job must quarantine as malformed."""
    try:
        event = json.loads(value)
    except ValueError:
        return None
    price = event.get("price") if isinstance(event, dict) else None
    return event if isinstance(price, int | float) and price > 0 else None


class Supervision(threading.Thread):
    """Supervision rounds every `every` seconds, as the DAG would run them (a round that fails while
    Postgres or S3 restarts is logged; the next one tries again)."""

    def __init__(self, settings, every: float = 3.0) -> None:
        super().__init__(name="chaos-supervisor", daemon=True)
        self.settings, self.every = settings, every
        self.stopping = threading.Event()
        self.failed_rounds = 0

    def run(self) -> None:
        from tickerlake.streaming.supervisor import supervise

        while not self.stopping.wait(self.every):
            try:
                report = supervise(settings=self.settings, stall_seconds=120)
                log.info("round: %s, batch %s", report.get("stream_ticks"), report.get("last_batch"))
            except Exception as exc:  # noqa: BLE001 - a service is restarting: next round
                self.failed_rounds += 1
                log.info("round failed: %s", f"{type(exc).__name__}: {exc}".splitlines()[0][:160])


def committed_batch(settings) -> int:
    """The ticks query's last committed batch id, -1 when unknown (none yet, or S3 is down)."""
    from tickerlake.core.clients import s3_client
    from tickerlake.core.stream_progress import TICKS_QUERY, read_progress

    try:
        progress = read_progress(s3_client(settings.s3)) or {}
    except Exception:  # noqa: BLE001 - S3 restarting
        return -1
    return int((progress.get("queries", {}).get(TICKS_QUERY) or {}).get("batchId", -1))


def last_batch(settings, timeout: float = 60.0) -> int:
    """The last committed batch id, read again while the progress file cannot be read."""
    batch = committed_batch(settings)
    deadline = time.monotonic() + timeout
    while batch < 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = committed_batch(settings)
    return batch


def committed_past(settings, batch: int) -> Callable[[], bool]:
    return lambda: committed_batch(settings) > batch


def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def kill_stream(settings) -> str:
    from tickerlake.streaming.supervisor import STREAM, running

    pid = running(settings, STREAM)
    if pid is None:
        return "no job running"
    os.killpg(pid, signal.SIGKILL)  # the driver and its JVM: nothing gets to clean up
    return f"pid {pid}"


def restart(settings, name: str) -> str:
    from tickerlake.dev.services import services

    [service] = [s for s in services(settings) if s.name == name]
    began = time.monotonic()
    service.down()
    service.up()
    return f"down and up in {time.monotonic() - began:.1f}s"


def inject(settings, fault: Fault) -> str:
    if fault is Fault.KILL_STREAM:
        return kill_stream(settings)
    return restart(settings, {Fault.RESTART_KAFKA: "kafka", Fault.RESTART_S3: "s3",
                              Fault.RESTART_POSTGRES: "postgres"}[fault])


def stream_chaos(settings, profile: Profile, rng: random.Random, began: float) -> tuple[Producer, list[Outcome]]:
    """Run the stream with the producer and supervision, inject the profile's faults in turn."""
    from tickerlake.streaming.supervisor import STREAM, running

    producer = Producer(settings, profile.rate, seed=rng.randrange(1 << 30),
                        malformed_every=profile.malformed_every, late_every=profile.late_every)
    supervision = Supervision(settings)
    producer.start()
    supervision.start()
    outcomes = []
    try:
        if not wait_for(lambda: committed_batch(settings) >= 2, profile.recover_timeout):
            raise RuntimeError("the stream job did not commit its first batches")
        producer.late_from.set()  # the watermark exists from here on: a back-dated event is too late
        for fault in profile.stream_faults(rng):
            time.sleep(rng.uniform(1.0, 5.0))  # anywhere inside a micro-batch
            at = time.monotonic()
            job = running(settings, STREAM)
            detail = inject(settings, fault)
            after = last_batch(settings)
            # two more batches: one that began after the fault, not only the one it interrupted
            recovered = wait_for(committed_past(settings, after + 1), profile.recover_timeout)
            seconds = time.monotonic() - at if recovered else None
            kept = recovered and job is not None and running(settings, STREAM) == job
            detail += "; the same job went on" if kept else "; a new job took over"
            outcomes.append(Outcome(fault, at - began, recovered, seconds, detail, job_kept=kept))
            log.info("%s (%s): %s", fault.value, detail,
                     f"recovered in {seconds:.1f}s" if recovered else "NOT recovered")
            if not recovered:
                break
        if not wait_for(lambda: len(producer.acked) + producer.malformed_acked >= profile.events,
                        timeout=3 * profile.events / profile.rate + 60, every=2.0):
            raise RuntimeError(f"the producer did not reach {profile.events:,} acknowledged events")
    finally:
        producer.stop()
        supervision.stopping.set()
        supervision.join(timeout=60)
    return producer, outcomes


def drain(settings) -> None:
    """Stop the supervised job cleanly, then let one `--available-now` run finish both queries."""
    from tickerlake.core.settings import REPO_ROOT
    from tickerlake.streaming.supervisor import stop_all

    stop_all(settings)
    done = subprocess.run([sys.executable, "-m", "spark_jobs.stream_ticks", "--available-now"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"the final --available-now run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def compare_bars() -> int:
    from tickerlake.core.settings import REPO_ROOT

    done = subprocess.run([sys.executable, "-m", "spark_jobs.compare_bars"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith("COMPARE_BARS "):
            return int(json.loads(line.removeprefix("COMPARE_BARS "))["differences"])
    raise RuntimeError(f"compare_bars printed no result: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def judge_stream(settings, producer: Producer, outcomes: list[Outcome], began: float) -> Verdict:
    from spark_jobs.stream_ticks import LATE
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import Table

    catalog = iceberg_catalog(settings)
    ticks = catalog.load_table(str(Table.TICKS)).scan(
        selected_fields=("event_id", "symbol", "price", "size", "event_time")).to_pandas()
    quarantine = catalog.load_table(str(Table.QUARANTINE_TICKS)).scan(
        selected_fields=("kafka_partition", "kafka_offset", "value", "reason")).to_arrow().to_pylist()
    sent = producer.acked
    late = producer.late_ids & set(sent)
    late_quarantined = [(_event((r["value"] or "").encode()) or {}).get("event_id")
                        for r in quarantine if r["reason"] == LATE]
    unexplained = (len(quarantine) - len({(r["kafka_partition"], r["kafka_offset"]) for r in quarantine})
                   + len(late_quarantined) - len(set(late_quarantined))
                   + sum(1 for i in set(late_quarantined) if i not in late))
    on_time = set(sent) - late
    ids = set(ticks["event_id"])
    changed = 0
    for row in ticks.drop_duplicates("event_id").itertuples(index=False):
        event = sent.get(str(row.event_id))
        if event is not None and (event["symbol"], event["price"], event["size"]) != (row.symbol, row.price, row.size):
            changed += 1
    lost = on_time - ids
    times = [producer.acked_at[i] - began for i in lost]
    for o in outcomes:  # which fault each lost event belongs to (acknowledged while it lasted)
        o.lost = sum(1 for t in times if o.at <= t <= o.at + (o.seconds or 0.0))
    return Verdict(acknowledged=len(sent), rows=len(ticks), lost=len(lost),
                   lost_window=(min(times), max(times)) if times else None,
                   duplicated=len(ticks) - len(ids), changed=changed, unexpected=len(ids - on_time),
                   quarantined=len(quarantine), quarantine_expected=len(late) + producer.malformed_acked,
                   quarantine_unexplained=unexplained, late=len(late), malformed=producer.malformed_acked,
                   bar_differences=compare_bars(),
                   resends=producer.resends, outcomes=outcomes)


def run(profile: Profile, seed: int) -> Verdict:
    from tickerlake.core.settings import get_settings
    from tickerlake.dev.private import private_stack

    rng = random.Random(seed)
    clean = None
    if profile.batch:
        from tickerlake.dev import chaos_batch

        clean = chaos_batch.clean_run()  # on a stack of its own, before the chaos
    with private_stack(CHAOS_ENV):
        settings = get_settings()
        began = time.monotonic()
        producer, outcomes = stream_chaos(settings, profile, rng, began)
        drain(settings)
        verdict = judge_stream(settings, producer, outcomes, began)
        if clean is not None:
            from tickerlake.dev import chaos_batch

            batch_outcomes, verdict.batch = chaos_batch.killed_run(settings, clean, rng, began)
            verdict.outcomes += batch_outcomes
    return verdict


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--seed", type=int, default=None, help="the faults' order and timing (default: random)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("kafka", "py4j", "botocore", "urllib3", "tickerlake.streaming"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    seed = args.seed if args.seed is not None else random.randrange(1 << 20)
    print(f"chaos: profile {args.profile}, seed {seed}", flush=True)
    verdict = run(PROFILES[args.profile], seed)
    print(verdict.table(), flush=True)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # kafka/py4j threads must not keep the process alive
