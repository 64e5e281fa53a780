"""Every DAG imports cleanly, follows the house style, and runs under `airflow dags test`."""
from __future__ import annotations

import pytest

from tickerlake.core.settings import REPO_ROOT

DAGS_DIR = REPO_ROOT / "dags"


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.models import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_every_dag_file_imports_with_zero_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert dag_bag.dags, "no DAG found"


def test_every_dag_is_documented_tagged_and_tz_aware(dag_bag):
    for dag_id, dag in dag_bag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 40, f"{dag_id}: doc_md missing"
        assert "tickerlake" in dag.tags, f"{dag_id}: tags missing"
        assert dag.start_date is not None and dag.start_date.tzinfo is not None, f"{dag_id}: start_date"


@pytest.mark.spark
def test_lake_smoke_dag_runs_under_airflow_dags_test(stack, settings):
    """The smoke DAG end to end: health task, then spark-submit of the Iceberg round trip."""
    from minio_init.warehouse import ensure_databases
    from tickerlake.dev.airflow_local import run_airflow

    ensure_databases(settings.pg)
    done = run_airflow(["dags", "test", "lake_smoke", "2026-01-02"], settings, capture=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "round trip: OK" in output
    assert "state=success" in output
    for secret in (settings.s3.secret_access_key, settings.pg.password):
        assert secret.get_secret_value() not in output
