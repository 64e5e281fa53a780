"""ohlcv_transform: raw bars -> cleaned bars with indicators and anomalies, gated by quality checks."""
from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from ingestion.sources.base import SourceName
from tickerlake.orchestration.assets import PROCESSED_BARS, RAW_OHLCV
from tickerlake.orchestration.dag_helpers import (
    DEFAULT_ARGS,
    HISTORY_START_DATE,
    jobs_from_asset_events,
    spark_submit_options,
    transform_args,
)

DOC = """
### ohlcv_transform

Scheduled on the `raw_ohlcv` asset (emitted by `ohlcv_backfill`). For each (source, interval) in
the triggering events, over the union of their ranges:

1. **transform** (`spark_jobs/transform_bars.py`, SparkSubmitOperator): schema enforcement,
   quarantine of invalid rows with their reason (`s3://processed/quarantine/ohlcv/...`),
   deduplication, TA-Lib-exact indicators, anomalies; MERGE into the Iceberg tables
   `processed.bars_<interval>` and `processed.anomalies`, the one copy (bars with open/close
   slightly outside [low, high] kept, widened, recorded in `s3://processed/repairs/...`).
   Rerunning an interval changes nothing.
2. **quality_gate** (great-expectations) on the bars table at the snapshot the transform
   committed (recorded at `s3://processed/transform/...`): schema,
   non-null keys, unique (symbol, timestamp), OHLC invariants, value ranges, freshness against
   each symbol's exchange calendar. A failed expectation fails the task; the result JSON (with
   the snapshot id) is stored at `s3://processed/quality/...`.
3. **alert_anomalies**: an anomaly on a symbol's latest bar raises one alert in Alertmanager per
   (symbol, bar), recorded in a ledger so that a rerun of the interval sends none.
4. Emits the `processed_bars` asset.

A manual run (no asset event) takes `source`, `interval`, `start`, `end` from its params.
"""


@dag(
    dag_id="ohlcv_transform",
    schedule=[RAW_OHLCV],
    start_date=HISTORY_START_DATE,
    catchup=False,
    max_active_runs=1,  # intervals of one table are merged one run at a time
    default_args=DEFAULT_ARGS,
    doc_md=DOC,
    tags=["tickerlake", "batch", "processed", "spark"],
    params={
        "source": Param("synthetic", enum=[s.value for s in SourceName]),
        "interval": Param("1d", enum=["1d", "1m"]),
        "start": Param(None, type=["null", "string"], format="date"),
        "end": Param(None, type=["null", "string"], format="date", description="exclusive"),
    },
)
def ohlcv_transform():
    @task
    def resolve_jobs(params=None, triggering_asset_events=None) -> list[dict]:
        return jobs_from_asset_events(triggering_asset_events, params)

    @task(retries=0, outlets=[PROCESSED_BARS])
    def quality_gate(job: dict) -> dict:
        from datetime import date

        from tickerlake.quality import QualityGateFailed, run_gate

        try:
            result = run_gate(job["interval"], date.fromisoformat(job["start"]),
                              date.fromisoformat(job["end"]))
        except QualityGateFailed as exc:
            raise AirflowFailException(str(exc)) from None  # bad data does not get better on retry
        return {"rows": result.rows, "result": result.result_key, **job}

    @task
    def alert_anomalies(job: dict) -> list[str]:
        from tickerlake.orchestration.dag_helpers import alert_anomalies as send

        return send(job)

    @task
    def spark_args(job: dict) -> list[str]:
        return transform_args(job)

    jobs = resolve_jobs()
    transform = SparkSubmitOperator.partial(
        task_id="transform", **spark_submit_options("transform_bars")
    ).expand(application_args=spark_args.expand(job=jobs))
    gated = quality_gate.expand(job=jobs)
    transform >> gated
    alert_anomalies.expand(job=gated)


ohlcv_transform()
