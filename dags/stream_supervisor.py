"""stream_supervisor: keep the streaming lane running (producer in demo mode, landing sink, Spark job)."""
from __future__ import annotations

from airflow.sdk import Param, dag, task

from tickerlake.orchestration.assets import REALTIME_TICKS
from tickerlake.orchestration.dag_helpers import DEFAULT_ARGS, START_DATE

DOC = """
### stream_supervisor

Every 5 minutes, under a Postgres advisory lock (so a retry or an overlapping run can never start
a second copy of the job on the same checkpoint):

- starts the demo producer (param `demo_producer`), the landing sink (when the stream reads the
  landing files, i.e. Spark's Kafka connector is absent) and `spark_jobs/stream_ticks.py` if
  they are not running: detached processes tracked by PID under the state directory;
- restarts a stalled job: no new micro-batch for `stall_seconds` while records wait, or a driver
  that stopped reporting progress;
- logs the landing lag per partition and the job's input/processed rows per second.

`action: stop` stops everything by PID (SIGTERM: the job finishes its batch, the sink lands what
it holds). Output: `s3://realtime/ticks/` (Parquet), `lake.realtime.ticks`, `bars_1m`, `bars_5m`.
"""


@dag(
    dag_id="stream_supervisor",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    doc_md=DOC,
    tags=["tickerlake", "streaming", "realtime"],
    params={
        "action": Param("supervise", enum=["supervise", "stop"]),
        "demo_producer": Param(False, type="boolean", description="also run the synthetic producer"),
        "stall_seconds": Param(180, type="integer", minimum=10),
    },
)
def stream_supervisor():
    # Each round marks the realtime data as updated: the warehouse load is scheduled on it.
    @task(outlets=[REALTIME_TICKS])
    def supervise(params=None) -> dict:
        from tickerlake.streaming.supervisor import stop_all
        from tickerlake.streaming.supervisor import supervise as run_round

        if params["action"] == "stop":
            return stop_all()
        return run_round(demo_producer=params["demo_producer"], stall_seconds=params["stall_seconds"])

    supervise()


stream_supervisor()
