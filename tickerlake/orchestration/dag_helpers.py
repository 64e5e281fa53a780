"""Building blocks that DAG files wire together (DAG files stay thin; nothing imports them).

Nothing here touches a network, database or secret at import or DAG-parse time: settings that
carry secrets are read inside tasks, and Spark jobs read theirs from the environment the
spark-submit process inherits.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum

from tickerlake.core.jars import jar_paths
from tickerlake.core.market import HISTORY_START
from tickerlake.core.settings import REPO_ROOT, SparkSettings
from tickerlake.core.spark import JIT_OPTIONS, driver_java_options

# A fixed, tz-aware start for every DAG: runs are keyed on data intervals, never the wall clock.
START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
# The batch DAGs (backfill, transform) start where the history tickerlake handles starts, so that
# `airflow dags test ohlcv_backfill 2002-05-06` or a backfill of 1995 runs (a logical date before
# a DAG's start_date runs no task); catchup is off, so the scheduler never walks that history.
HISTORY_START_DATE = pendulum.datetime(HISTORY_START.year, HISTORY_START.month, HISTORY_START.day, tz="UTC")

# The Airflow connection holding the Alpha Vantage API key (its password), if any.
ALPHAVANTAGE_CONN_ID = "alphavantage_default"

# Airflow's connection for task-failure notices (apprise: Slack, email, a JSON webhook, ...).
NOTIFY_CONN_ID = "apprise_default"


def notify_failure(context: dict) -> None:
    """on_failure_callback: one notice per failed task (after its last retry) through Apprise,
    when the `apprise_default` connection exists; without it, one log line says how to set it."""
    from airflow.providers.apprise.notifications.apprise import AppriseNotifier
    from airflow.sdk import BaseHook
    from apprise import NotifyType

    try:
        BaseHook.get_connection(NOTIFY_CONN_ID)
    except Exception:  # noqa: BLE001 - any lookup failure means: not configured
        import logging

        logging.getLogger(__name__).warning(
            "task failed; no failure notice sent: set the Airflow connection %s "
            "(or TICKERLAKE_MONITORING_WEBHOOK_URL on the local stack)", NOTIFY_CONN_ID)
        return
    ti = context["ti"]
    AppriseNotifier(
        title=f"tickerlake: {ti.dag_id}.{ti.task_id} failed",
        body=(f"DAG {ti.dag_id}, task {ti.task_id} (map index {ti.map_index}), run {ti.run_id}, "
              f"try {ti.try_number}: {context.get('exception')}"),
        notify_type=NotifyType.FAILURE, apprise_conn_id=NOTIFY_CONN_ID,
    ).notify(context)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "tickerlake",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=1),
    "retry_exponential_backoff": True,
    "on_failure_callback": notify_failure,
}


def spark_application(module: str) -> str:
    """The file spark-submit runs for a job in spark_jobs/ (e.g. "iceberg_roundtrip")."""
    return str(REPO_ROOT / "spark_jobs" / f"{module}.py")


def spark_submit_options(module: str) -> dict[str, Any]:
    """SparkSubmitOperator arguments for a job in spark_jobs/: the lake's jars, driver memory.

    The master comes from the `spark_default` connection (local[2] locally, the Spark master in
    compose); S3 and catalog credentials reach the job through its environment, never through
    the operator's (rendered, visible) arguments.
    """
    spark = SparkSettings()
    return {
        "application": spark_application(module),
        "conn_id": "spark_default",
        "name": f"tickerlake-{module}",
        # The same list the session builder uses; if jars are missing the job itself stops with
        # one line naming `make jars` (a DAG file must parse anywhere).
        "jars": ",".join(str(p) for p in jar_paths(spark.jars_dir, strict=False)) or None,
        "driver_memory": spark.driver_memory,
        "conf": {"spark.ui.showConsoleProgress": "false",
                 # the session builder's JVM options: spark-submit starts the JVM, so they go here
                 "spark.driver.extraJavaOptions": driver_java_options(spark),
                 "spark.executor.extraJavaOptions": JIT_OPTIONS},
    }


def spark_submit(task_id: str, module: str, application_args: list[str] | None = None, **kwargs: Any):
    """A SparkSubmitOperator running spark_jobs/<module>.py (see `spark_submit_options`)."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return SparkSubmitOperator(task_id=task_id, application_args=application_args or [],
                               **spark_submit_options(module), **kwargs)


def source_options(source: str, csv_directory: str) -> dict[str, Any]:
    """A backfill task's source options: the CSV folder, or the Alpha Vantage key from the
    `alphavantage_default` connection when it exists (else the setting)."""
    if source == "csv":
        return {"directory": csv_directory}
    if source == "alphavantage":
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return {"api_key": BaseHook.get_connection(ALPHAVANTAGE_CONN_ID).password or None}
        except AirflowNotFoundException:
            return {}
    return {}


def check_stack() -> dict[str, str]:
    """Fail the task with one clear line unless S3, Kafka and Postgres all answer (read-only)."""
    from tickerlake.core.health import checks
    from tickerlake.core.settings import get_settings

    problems = []
    report = {}
    for check in checks(get_settings()):
        try:
            check.probe()
            report[check.name] = f"healthy at {check.address}"
        except Exception as exc:  # noqa: BLE001 - collect every failure, then report once
            problems.append(f"{check.name} at {check.address}: {type(exc).__name__}: {exc}")
    if problems:
        raise RuntimeError("stack not healthy: " + "; ".join(problems))
    return report


def interval_from_context(params: dict, data_interval_start, data_interval_end) -> tuple[date, date]:
    """The [start, end) session dates a run covers: its data interval, unless the run's params
    name `start`/`end` explicitly (a manual backfill of a range)."""
    start = params.get("start") or data_interval_start.date().isoformat()
    end = params.get("end") or data_interval_end.date().isoformat()
    start_d, end_d = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    if end_d <= start_d:  # a manual run of a cron timetable can have start == end
        end_d = start_d + timedelta(days=1)
    return start_d, end_d


def jobs_from_asset_events(events: dict, params: dict) -> list[dict]:
    """Transform jobs from the backfill's asset events (one per source/interval, ranges merged),
    or from params for a manual run."""
    merged: dict[tuple[str, str], dict] = {}
    for asset_events in (events or {}).values():
        for event in asset_events:
            extra = dict(event.extra or {})
            if not {"source", "interval", "start", "end"} <= extra.keys():
                continue
            key = (extra["source"], extra["interval"])
            job = merged.setdefault(key, {"source": key[0], "interval": key[1],
                                          "start": extra["start"], "end": extra["end"]})
            job["start"] = min(job["start"], extra["start"])
            job["end"] = max(job["end"], extra["end"])
    if merged:
        return list(merged.values())
    if not (params.get("start") and params.get("end")):
        raise ValueError("no triggering asset event and no start/end params: nothing to transform")
    return [{"source": params["source"], "interval": params["interval"], "start": params["start"],
             "end": params["end"]}]


def transform_args(job: dict) -> list[str]:
    return ["--start", job["start"], "--end", job["end"], "--interval", job["interval"],
            "--source", job["source"]]


# The Airflow connection that, when defined, sends the warehouse load to Snowflake.
SNOWFLAKE_CONN_ID = "snowflake_default"


def snowflake_connect_from_airflow():
    """SnowflakeHook(...).get_conn when the `snowflake_default` connection exists, else None
    (then the settings decide: TICKERLAKE_SNOWFLAKE_ACCOUNT set -> Snowflake, else Postgres)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(SNOWFLAKE_CONN_ID)
    except AirflowNotFoundException:
        return None
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    return SnowflakeHook(snowflake_conn_id=SNOWFLAKE_CONN_ID).get_conn


def alert_anomalies(job: dict) -> list[str]:
    """After the gate: alert each anomalous latest bar of the job's interval once (ledgered)."""
    from tickerlake.core.settings import get_settings
    from tickerlake.monitoring.anomaly_alerts import alert_new_anomalies

    sent = alert_new_anomalies(get_settings(), job["interval"], date.fromisoformat(job["start"]),
                               date.fromisoformat(job["end"]))
    return [f"{a.symbol} {a.interval} {a.bar_ts.isoformat()} {','.join(a.kinds)}" for a in sent]
