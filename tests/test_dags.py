"""Every DAG imports cleanly, follows the house style, and runs under `airflow dags test`."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tickerlake.settings import REPO_ROOT

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


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_nothing_imports_a_dag_file_and_jobs_never_import_airflow(path: Path):
    """DAG files are leaves; Spark jobs and shared code stay importable without Airflow."""
    dag_module = path.stem
    for source in [*REPO_ROOT.glob("tickerlake/**/*.py"), *REPO_ROOT.glob("spark_jobs/**/*.py"),
                   *REPO_ROOT.glob("ingestion/**/*.py"), *DAGS_DIR.glob("*.py")]:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n == f"dags.{dag_module}" or n == dag_module for n in names), \
                    f"{source} imports the DAG file {path.name}"
                if "spark_jobs" in source.parts:
                    assert not any(n.split(".")[0] == "airflow" for n in names), f"{source} imports Airflow"


@pytest.mark.spark
def test_lake_smoke_dag_runs_under_airflow_dags_test(stack, settings):
    """The smoke DAG end to end: health task, then spark-submit of the Iceberg round trip."""
    from minio_init.warehouse import ensure_databases
    from tickerlake.airflow_local import run_airflow

    ensure_databases(settings.pg)
    done = run_airflow(["dags", "test", "lake_smoke", "2026-01-02"], settings, capture=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "round trip: OK" in output
    assert "state=success" in output
    for secret in (settings.s3.secret_access_key, settings.pg.password):
        assert secret.get_secret_value() not in output
