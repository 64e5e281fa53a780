"""lake_maintenance: compact, re-manifest, expire and clean the lake's Iceberg tables."""
from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag

from tickerlake.core.market import EXCHANGE_TZ
from tickerlake.orchestration.dag_helpers import DEFAULT_ARGS, START_DATE, spark_submit

DOC = """
### lake_maintenance

Every day at 16:30 New York time, after the session closed (the streaming tables took the day's
micro-batches; the processed tables took the day's transforms), `spark_jobs/maintain_tables.py`
runs Iceberg's Spark procedures on each table of the namespace:

1. `rewrite_data_files` to the table's target file size (`TARGET_FILE_BYTES`), partial progress
   on, retried on a commit conflict: safe while the stream writes (a rewrite is a `replace`
   snapshot the stream's reader skips);
2. `rewrite_manifests`;
3. `expire_snapshots` older than `TICKERLAKE_ICEBERG_SNAPSHOT_RETENTION_HOURS`, keeping the
   snapshots the stream's replay check and its bars query still need;
4. `remove_orphan_files` older than `TICKERLAKE_ICEBERG_ORPHAN_MIN_AGE_HOURS`.

The log and the task's `MAINTENANCE_SUMMARY` line give each table's data files, bytes and
snapshots before and after. Reruns are safe: an already compact table has nothing to rewrite.
"""


@dag(
    dag_id="lake_maintenance",
    schedule=CronTriggerTimetable("30 16 * * *", timezone=EXCHANGE_TZ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    doc_md=DOC,
    tags=["tickerlake", "maintenance", "iceberg"],
)
def lake_maintenance():
    # the realtime tables first: they took the most commits since the last run
    realtime = spark_submit("maintain_realtime", "maintain_tables", application_args=["--namespace", "realtime"])
    processed = spark_submit("maintain_processed", "maintain_tables",
                             application_args=["--namespace", "processed"])
    realtime >> processed


lake_maintenance()
