"""Building blocks that DAG files wire together (DAG files stay thin; nothing imports them).

Nothing here touches a network, database or secret at import or DAG-parse time: settings that
carry secrets are read inside tasks, and Spark jobs read theirs from the environment the
spark-submit process inherits.
"""
from __future__ import annotations

from typing import Any

import pendulum

from tickerlake.jars import ALL_JARS
from tickerlake.settings import REPO_ROOT, SparkSettings

# A fixed, tz-aware start for every DAG: runs are keyed on data intervals, never the wall clock.
START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "tickerlake",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=1),
    "retry_exponential_backoff": True,
}


def spark_application(module: str) -> str:
    """The file spark-submit runs for a job in spark_jobs/ (e.g. "iceberg_roundtrip")."""
    return str(REPO_ROOT / "spark_jobs" / f"{module}.py")


def spark_submit(task_id: str, module: str, application_args: list[str] | None = None, **kwargs: Any):
    """A SparkSubmitOperator for a job in spark_jobs/, with the lake's jars and driver memory.

    The master comes from the `spark_default` connection (local[2] locally, the Spark master in
    compose); S3 and catalog credentials reach the job through its environment, never through
    the operator's (rendered, visible) arguments.
    """
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    spark = SparkSettings()
    jars = ",".join(str(spark.jars_dir / jar.name) for jar in ALL_JARS
                    if (spark.jars_dir / jar.name).exists())
    return SparkSubmitOperator(
        task_id=task_id,
        application=spark_application(module),
        application_args=application_args or [],
        conn_id="spark_default",
        name=f"tickerlake-{module}",
        jars=jars or None,
        driver_memory=spark.driver_memory,
        conf={"spark.ui.showConsoleProgress": "false"},
        **kwargs,
    )


def check_stack() -> dict[str, str]:
    """Fail the task with one clear line unless S3, Kafka and Postgres all answer."""
    from tickerlake.settings import get_settings
    from tickerlake.stack.services import services

    problems = []
    report = {}
    settings = get_settings()
    for service in services(settings):
        try:
            service.is_healthy()
            report[service.name] = f"healthy at {service.address}"
        except Exception as exc:  # noqa: BLE001 - collect every failure, then report once
            problems.append(f"{service.name} at {service.address}: {type(exc).__name__}: {exc}")
    if problems:
        raise RuntimeError("stack not healthy: " + "; ".join(problems))
    return report
