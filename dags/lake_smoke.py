"""lake_smoke: prove the lake works end to end (services answer; Spark writes and reads Iceberg)."""
from __future__ import annotations

from airflow.sdk import dag, task

from tickerlake.orchestration.dag_helpers import DEFAULT_ARGS, START_DATE, check_stack, spark_submit

DOC = """
### lake_smoke

Checks that the S3 store, Kafka and Postgres answer, then runs `spark_jobs/iceberg_roundtrip.py`
with SparkSubmitOperator: it MERGEs 100 rows into `processed.smoke_roundtrip` (Iceberg, JDBC
catalog, data in the `processed` bucket) and reads them back. Rerunning changes nothing.

Trigger it by hand after `make up`, or `make smoke` (runs it with `airflow dags test`).
"""


@dag(
    dag_id="lake_smoke",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 0},
    doc_md=DOC,
    tags=["tickerlake", "smoke"],
)
def lake_smoke():
    @task
    def stack_healthy() -> dict[str, str]:
        return check_stack()

    stack_healthy() >> spark_submit("iceberg_roundtrip", "iceberg_roundtrip")


lake_smoke()
