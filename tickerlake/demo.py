"""The main job on the embedded local stack: `make demo` (after `make setup`).

Brings the stack up, initialises it, runs the `lake_smoke` DAG with `airflow dags test` (Spark
MERGEs into an Iceberg table in the lake), reads the table back with pyiceberg through the same
catalog, and prints where to look. Each later lane adds its DAGs here.
"""
from __future__ import annotations

import subprocess
import sys
import time

from tickerlake.airflow_local import run_airflow
from tickerlake.errors import StackError, one_line_errors
from tickerlake.names import Namespace
from tickerlake.settings import REPO_ROOT, get_settings
from tickerlake.stack.services import services

LOGICAL_DATE = "2026-01-02"


def step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def done(started: float, note: str = "") -> None:
    print(f"    done in {time.monotonic() - started:.1f}s {note}".rstrip(), flush=True)


def run_dag(dag_id: str, settings) -> None:
    log = settings.stack.state_dir / "logs" / f"dags-test-{dag_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result = run_airflow(["dags", "test", dag_id, LOGICAL_DATE], settings, capture=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StackError(f"airflow dags test {dag_id} failed (exit {result.returncode}); log: {log}")
    print(f"    airflow dags test {dag_id}: success (log: {log})")


@one_line_errors
def main() -> int:
    settings = get_settings()
    started = step("Stack: S3 server, Kafka broker, Postgres (127.0.0.1)")
    for service in services(settings):
        print(f"    {service.name:<9} {service.up():<16} {service.address}")
    done(started)

    started = step("Init: buckets, topics, warehouse database and roles (idempotent)")
    subprocess.run([sys.executable, "-m", "minio_init"], check=True, cwd=REPO_ROOT)
    done(started)

    started = step("lake_smoke DAG: Spark MERGE into Iceberg on s3a://, via airflow dags test")
    run_dag("lake_smoke", settings)
    done(started)

    started = step("Read back with pyiceberg (same JDBC catalog)")
    from tickerlake.spark import iceberg_catalog

    table = iceberg_catalog(settings).load_table(f"{Namespace.PROCESSED.value}.smoke_roundtrip")
    arrow = table.scan().to_arrow()
    print(f"    {settings.iceberg.catalog}.processed.smoke_roundtrip: {arrow.num_rows} rows, "
          f"{len(table.snapshots())} snapshot(s), location {table.location()}")
    print(f"    first rows: {arrow.slice(0, 3).to_pylist()}")
    done(started)

    print(f"""
Where to look
  S3 console (bucket browser):  {settings.s3.console_url}   (buckets raw, realtime, processed)
  S3 API:                       {settings.s3.endpoint_url}
  Kafka:                        {settings.kafka.bootstrap_servers}
  Postgres warehouse:           psql -h {settings.pg.host} -p {settings.pg.port} -U {settings.pg.analyst_user} {settings.pg.database}
  Stack status / stop:          make status / make down""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
