"""warehouse_load: COPY the lake's Iceberg tables (their snapshots' data files) into Snowflake, or the
Postgres warehouse."""
from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from tickerlake.orchestration.assets import PROCESSED_BARS, REALTIME_TICKS
from tickerlake.orchestration.dag_helpers import DEFAULT_ARGS, START_DATE
from tickerlake.warehouse.datasets import Datasets

DOC = """
### warehouse_load

Runs when the batch lane publishes `processed_bars`, when the stream supervisor publishes
`realtime_ticks`, and every 15 minutes for the intraday tables.

1. `load` (one mapped task per dataset): a table still at the Iceberg snapshot loaded last time
   is skipped; otherwise every lake partition whose data files differ from the load ledger is
   COPYed in (straight into the table on its first load, else through staging and an upsert),
   two partitions at a time; partitions gone from the lake are deleted. Reruns load nothing twice.
2. `consistency_check` (last): for each partition loaded since the last check, row count and key
   checksum (by SQL) of the lake's rows equal the warehouse's; a mismatch fails the run and names
   the partition. Param `full_check` checks every partition, reading the lake again.

Backend: Snowflake when the `snowflake_default` connection exists (or
`TICKERLAKE_SNOWFLAKE_ACCOUNT` is set), else Postgres (`warehouse` schema). Param `reload`: forget
the ledger and load everything again. See docs/warehouse.md.
"""


@dag(
    dag_id="warehouse_load",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
        assets=(PROCESSED_BARS | REALTIME_TICKS)),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=DOC,
    tags=["tickerlake", "warehouse", "snowflake", "postgres"],
    params={"reload": Param(False, type="boolean", description="forget the ledger, reload everything"),
            "full_check": Param(False, type="boolean",
                                description="check every partition, the lake read again (not only the new loads)")},
)
def warehouse_load():
    @task(map_index_template="{{ task.op_kwargs['dataset'] }}")
    def load(dataset: str, params=None) -> dict:
        from tickerlake.core.settings import get_settings
        from tickerlake.orchestration.dag_helpers import snowflake_connect_from_airflow
        from tickerlake.warehouse import pipeline

        [report] = pipeline.load(get_settings(), [dataset], reload=params["reload"],
                                 snowflake_connect=snowflake_connect_from_airflow())
        print(report.line())
        return {"dataset": dataset, "rows": report.rows_loaded, "partitions": len(report.partitions_loaded)}

    @task
    def consistency_check(params=None) -> dict:
        from tickerlake.core.settings import get_settings
        from tickerlake.orchestration.dag_helpers import snowflake_connect_from_airflow
        from tickerlake.warehouse import pipeline

        checks = pipeline.check(get_settings(), full=params["full_check"],
                                snowflake_connect=snowflake_connect_from_airflow())
        summary = {"partitions": len(checks), "rows": sum(c.lake[0] for c in checks)}
        print(f"consistent: {summary}")
        return summary

    load.expand(dataset=[d.name for d in Datasets.all()]) >> consistency_check()


warehouse_load()
