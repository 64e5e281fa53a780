"""Start, watch and stop the streaming processes: the demo producer and the Spark streaming job,
each detached and tracked by PID under the state directory.

The job reads the topic with Spark's Kafka source; its lag is the topic's end offsets minus the
offsets its last committed micro-batch reached (from the job's progress file).

One job across hosts: the job itself holds a lease in Postgres for its whole life
(`tickerlake.core.lease`, renewed before every commit, fenced by a token). A round whose host has
no job of its own starts none while another holder's lease is live ("held elsewhere"); a job
started next to a dead holder's unexpired lease waits for it to expire. PID files are a local
detail: which process on this host to watch and stop. `supervise()` also holds a Postgres
advisory lock for the length of one round, so overlapping rounds do not race each other.

The stall rule (`stall_verdict`) tells a slow batch from a stuck one: the job reports an
`activity` figure that grows while a batch makes progress (Spark tasks completed, writer steps
done). A job is restarted only when its driver stopped reporting, or when records wait and
neither the batch id nor the activity moved for `stall_seconds`; every verdict is logged with its
evidence. `stop_all()` stops everything by PID with SIGTERM (the job finishes its micro-batch).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickerlake.core.errors import one_line_errors
from tickerlake.core.processes import PidFile, spawn, stop
from tickerlake.core.settings import REPO_ROOT, Settings, get_settings
from tickerlake.core.stream_progress import (
    STREAM_JOB,
    TICKS_QUERY,
    kafka_lag,
    kafka_source_positions,
    pid_path,
    read_progress,
    ready_since,
)

log = logging.getLogger(__name__)
LOCK_KEY = 0x7469636B  # pg_advisory_lock key: "tick"


@dataclass(frozen=True)
class Managed:
    name: str
    module: str
    args: tuple[str, ...] = ()


PRODUCER = Managed("producer", "ingestion.producer", ("--rate", "50"))
STREAM = Managed(STREAM_JOB, "spark_jobs.stream_ticks")


class SupervisorBusy(RuntimeError):
    pass


def _pid_file(settings: Settings, proc: Managed) -> PidFile:
    return PidFile(pid_path(settings, proc.name))


def _log_path(settings: Settings, proc: Managed) -> Path:
    return settings.stack.state_dir / "logs" / f"{proc.name}.log"


def running(settings: Settings, proc: Managed) -> int | None:
    return _pid_file(settings, proc).running_pid()


def ensure_running(settings: Settings, proc: Managed, extra_args: tuple[str, ...] = ()) -> str:
    pid = running(settings, proc)
    if pid is not None:
        return f"running (pid {pid})"
    pid = spawn([sys.executable, "-m", proc.module, *proc.args, *extra_args], _log_path(settings, proc),
                _pid_file(settings, proc), cwd=REPO_ROOT)
    return f"started (pid {pid})"


def stop_proc(settings: Settings, proc: Managed, sig: int = signal.SIGTERM) -> bool:
    return stop(_pid_file(settings, proc), sig=sig, timeout=60)


def _stall_state(settings: Settings) -> Path:
    return settings.stack.state_dir / "stream" / "last_progress.json"


def stall_verdict(settings: Settings, progress: dict | None, waiting: int,
                  stall_seconds: float) -> tuple[bool, str]:
    """(stalled, evidence): the driver stopped reporting, or records wait while neither the batch
    id nor the job's activity moved for `stall_seconds`. A slow batch that progresses is not."""
    state_path = _stall_state(settings)
    now = time.time()
    batch = ((progress or {}).get("queries", {}).get(TICKS_QUERY) or {}).get("batchId", -1)
    activity = (progress or {}).get("activity")
    seen: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    if seen.get("batch") != batch or "since" not in seen:
        seen.update(batch=batch, since=now)
    if seen.get("activity") != activity or "activity_since" not in seen:
        seen.update(activity=activity, activity_since=now)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(seen))
    silent_for = now - float((progress or {}).get("written_at") or now)
    if progress is not None and silent_for > stall_seconds:
        return True, f"stuck: the driver has not reported for {silent_for:.0f}s (limit {stall_seconds:g}s)"
    same_batch = now - seen["since"]
    # a job that reports no activity figure gives no evidence of progress inside a batch
    idle = same_batch if activity is None else now - seen["activity_since"]
    evidence = (f"batch {batch} for {same_batch:.0f}s, activity {activity} unchanged for {idle:.0f}s, "
                f"{waiting} records waiting (limit {stall_seconds:g}s)")
    if waiting > 0 and same_batch > stall_seconds and idle > stall_seconds:
        return True, f"stuck: {evidence}"
    if waiting > 0 and same_batch > stall_seconds:
        return False, f"slow but progressing: {evidence}"
    return False, f"healthy: {evidence}"


def is_stalled(settings: Settings, progress: dict | None, waiting: int, stall_seconds: float) -> bool:
    stalled, evidence = stall_verdict(settings, progress, waiting, stall_seconds)
    log.info("stall rule: %s", evidence)
    return stalled


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie writes nothing
    except psutil.NoSuchProcess:
        return False


def lease_elsewhere(settings: Settings, conn) -> str | None:
    """Who holds the stream's live lease, when it is not a dead process of this host (whose lease
    a new job waits out): then this round must not start a job."""
    from tickerlake.core.lease import ensure_lease_table, lease_state

    ensure_lease_table(conn)
    state = lease_state(conn, STREAM_JOB)
    if state is None or not state.live:
        return None
    host, _, rest = state.holder.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return None
    return f"held elsewhere by {state.holder} (lease token {state.token}) until {state.expires_at:%H:%M:%S%z}"


JOB_READY_TIMEOUT_SECONDS = 120.0


def wait_until_ready(s3, settings: Settings, timeout: float) -> float | None:
    """Seconds until the job just started reports itself ready (warmed up, both queries running;
    spark_jobs/stream_ticks.py), None if it did not within `timeout` or died first."""
    began = time.time()
    while time.time() - began < timeout and running(settings, STREAM) is not None:
        if ready_since(read_progress(s3), began):
            return round(time.time() - began, 1)
        time.sleep(0.5)
    log.warning("the stream job did not report ready within %.0fs; starting the producer anyway", timeout)
    return None


def supervise(*, demo_producer: bool = False, stall_seconds: float = 180.0,
              settings: Settings | None = None) -> dict:
    """One supervision round (the DAG runs it every few minutes)."""
    import psycopg

    from tickerlake.core.clients import pg_connect, s3_client
    from tickerlake.core.spark import require_kafka_connector

    settings = settings or get_settings()
    s3 = s3_client(settings.s3)
    with pg_connect(settings.pg, autocommit=True) as lock_conn:
        row = lock_conn.execute("select pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        held = bool(row and row[0])
        if not held:
            raise SupervisorBusy("another supervisor holds the stream lock; not starting a second copy")
        try:
            require_kafka_connector(settings)  # one line naming the setting, before anything starts
            report: dict = {"source": "kafka"}
            progress = read_progress(s3)
            # what the job's Kafka source has not committed yet
            lag = kafka_lag(settings, kafka_source_positions(progress))
            if running(settings, STREAM) is not None:
                stalled, evidence = stall_verdict(settings, progress, sum(lag.values()), stall_seconds)
                log.info("stall rule: %s", evidence)
                report["stall_rule"] = evidence
                if stalled:
                    stop_proc(settings, STREAM, signal.SIGKILL)  # hung: a graceful stop would hang too
                    report["restarted_stalled_job"] = True
                report[STREAM.name] = ensure_running(settings, STREAM)
            elif (holder := lease_elsewhere(settings, lock_conn)) is not None:
                log.info("stream job: %s; not starting one here", holder)
                report[STREAM.name] = holder
            else:
                report[STREAM.name] = ensure_running(settings, STREAM)
            if demo_producer:
                if str(report[STREAM.name]).startswith("started") and running(settings, PRODUCER) is None:
                    # the demo's quotes start once the new job is warm, so they show within seconds;
                    # the producer prepares (imports, last closes, broker) during the warm-up
                    began = time.time()
                    report[PRODUCER.name] = ensure_running(settings, PRODUCER,
                                                           ("--start-when-ready", f"{began - 1:.3f}"))
                    report["job_ready_after_s"] = wait_until_ready(s3, settings, JOB_READY_TIMEOUT_SECONDS)
                else:
                    report[PRODUCER.name] = ensure_running(settings, PRODUCER)
            report["kafka_lag"] = lag
            ticks = ((progress or {}).get("queries", {}).get(TICKS_QUERY) or {})
            report["last_batch"] = ticks.get("batchId")
            report["input_rows_per_second"] = ticks.get("inputRowsPerSecond")
            report["processed_rows_per_second"] = ticks.get("processedRowsPerSecond")
            report["counters"] = (progress or {}).get("counters", {})
            return report
        finally:
            try:
                lock_conn.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
            except psycopg.Error:
                pass  # the lock dies with the session anyway


def stop_all(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    return {proc.name: stop_proc(settings, proc) for proc in (PRODUCER, STREAM)}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.streaming.supervisor",
                                     description="one supervision round of the streaming lane, or stop it")
    parser.add_argument("action", nargs="?", choices=["supervise", "stop"], default="supervise")
    parser.add_argument("--demo", action="store_true", help="also run the synthetic demo producer")
    parser.add_argument("--stall-seconds", type=float, default=180.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    report = stop_all() if args.action == "stop" else supervise(demo_producer=args.demo,
                                                                 stall_seconds=args.stall_seconds)
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # py4j/kafka threads must not keep the round's process alive
