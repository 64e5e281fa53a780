"""Run the `airflow` CLI against the embedded local stack.

`python -m tickerlake.dev.airflow_local ARGS...` (for example `dags test lake_smoke 2026-01-02`) runs
`airflow ARGS` with AIRFLOW_HOME under the state directory, the metadata database on the stack's
Postgres, this repository's `dags/` folder, LocalExecutor, and a `spark_default` connection for
the configured Spark master. The metadata database is migrated on first use.

Docker users do not need this: docker-compose.yml sets the same variables on the Airflow services.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tickerlake.core.errors import one_line_errors
from tickerlake.core.settings import REPO_ROOT, Settings, get_settings
from tickerlake.dev.secret_files import persistent_secret


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.stack.state_dir / "airflow"
    venv_bin = str(Path(sys.executable).parent)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "UTC",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.pg.sqlalchemy_url(settings.pg.airflow_database),
        "AIRFLOW__CORE__FERNET_KEY": persistent_secret(home / "fernet.key", _fernet_key),
        "AIRFLOW__API_AUTH__JWT_SECRET": persistent_secret(home / "jwt.secret"),
        "AIRFLOW__API__SECRET_KEY": persistent_secret(home / "api.secret"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": settings.spark.master}),
        # Airflow's own metrics, to the exporter's StatsD listener (docs/operations.md)
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(settings.monitoring.statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        **notify_connection(settings),
        # spark-submit and the stack's binaries live in the venv.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT),
        "GX_ANALYTICS_ENABLED": "false",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }


def notify_connection(settings: Settings) -> dict[str, str]:
    """The `apprise_default` connection posting task-failure notices as JSON to the webhook."""
    url = settings.monitoring.webhook_url.get_secret_value()
    if not url:
        return {}
    scheme, _, rest = url.partition("://")
    path = ("jsons://" if scheme == "https" else "json://") + rest
    return {"AIRFLOW_CONN_APPRISE_DEFAULT": json.dumps(
        {"conn_type": "apprise", "extra": {"config": {"path": path}}})}


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def run_airflow(args: list[str], settings: Settings | None = None, *, check: bool = False,
                capture: bool = False, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `airflow ARGS` in the local environment, migrating the metadata DB first if needed."""
    settings = settings or get_settings()
    env = {**os.environ, **airflow_env(settings), **(extra_env or {})}
    airflow = str(Path(sys.executable).parent / "airflow")
    marker = Path(env["AIRFLOW_HOME"]) / ".db-migrated"
    if not marker.exists():
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        # the dashboard's read-only view of the DAG runs (needs the migrated tables)
        subprocess.run([sys.executable, "-m", "minio_init", "--only", "airflow"], env=env, check=True,
                       capture_output=True, cwd=REPO_ROOT)
        marker.touch()
    from tickerlake.dev.airflow_warm import active_for
    from tickerlake.dev.airflow_warm import run as run_warm

    warm = active_for(env)
    if warm is not None and capture:  # forked from the warm process: Airflow already imported
        done = run_warm(warm, args, env, settings.stack.state_dir)
        if check:
            done.check_returncode()
        return done
    return subprocess.run([airflow, *args], env=env, check=check, text=True,
                          capture_output=capture)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.airflow_local",
                                     description="run the airflow CLI against the local stack")
    parser.add_argument("airflow_args", nargs=argparse.REMAINDER, help="arguments for `airflow`")
    args = parser.parse_args(argv)
    return run_airflow(args.airflow_args).returncode


if __name__ == "__main__":
    sys.exit(main())
