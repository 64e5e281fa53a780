"""stream_supervisor: keep the streaming lane running (producer in demo mode, the Spark job), stop it, check it."""
from __future__ import annotations

from airflow.sdk import Param, dag, task

from tickerlake.orchestration.assets import REALTIME_TICKS
from tickerlake.orchestration.dag_helpers import DEFAULT_ARGS, START_DATE, spark_submit

DOC = """
### stream_supervisor

Every 5 minutes, under a Postgres advisory lock held for the round (a retry or an overlapping round
cannot start a second copy of the job at the same moment):

- starts the demo producer (param `demo_producer`) and `spark_jobs/stream_ticks.py` if they are
  not running: detached processes tracked by PID under the state directory. The job reads the
  ticks topic with Spark's Kafka source; without the connector jars the round fails with one
  line naming the setting;
- restarts a stalled job: no new micro-batch for `stall_seconds` while records wait, or a driver
  that stopped reporting progress;
- logs the lag per partition, the input/processed rows per second and the job's counters (ticks
  appended, late and malformed events quarantined).

`action: stop` stops everything by PID (SIGTERM: the job finishes its micro-batch). Output: the
Iceberg tables `realtime.ticks`, `bars_1m`, `bars_5m`, `quarantine_ticks`; the records as they
came in `s3://raw/archive/ticks/`. `action: compare` recomputes the 1-minute bars of the
session `compare_date` (default: the run's date) from `realtime.ticks` and fails on any
difference from `realtime.bars_1m` (stream equals batch).
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
        "action": Param("supervise", enum=["supervise", "stop", "compare"]),
        "compare_date": Param(None, type=["null", "string"], format="date",
                              description="action compare: the closed session (UTC date); default the run's date"),
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
        if params["action"] == "compare":
            return {"action": "compare"}
        return run_round(demo_producer=params["demo_producer"], stall_seconds=params["stall_seconds"])

    @task.short_circuit
    def comparing(params=None) -> bool:
        return params["action"] == "compare"

    compare = spark_submit("compare_bars", "compare_bars",
                           application_args=["--date", "{{ params.compare_date or ds }}"])
    supervise() >> comparing() >> compare


stream_supervisor()
