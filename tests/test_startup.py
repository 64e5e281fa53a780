"""What a task pays before it works: the Spark driver's class archive and the warm `airflow` CLI
(benchmarks/startup.py measures both)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tickerlake.core.settings import REPO_ROOT

PROBE = """
import sys
from tickerlake.core.spark import build_spark_session, class_archive_options
from tickerlake.core.settings import get_settings
options = class_archive_options(get_settings().spark).replace("-Xshare:auto", "-Xshare:on")  # on: fail if unusable
spark = build_spark_session("archive-probe", extra_conf={
    "spark.sql.defaultCatalog": "spark_catalog", "spark.ui.enabled": "false",
    "spark.driver.extraJavaOptions": f"{options} -Xlog:class+load=info:file={sys.argv[1]}"})
spark.range(1000).selectExpr("id % 7 AS k").groupBy("k").count().collect()
spark.stop()
"""


@pytest.mark.spark
def test_a_spark_driver_maps_its_classes_from_the_archive_setup_made(tmp_path):
    from tickerlake.core.settings import get_settings
    from tickerlake.core.spark import class_archive_options, spark_conf

    settings = get_settings()
    assert settings.spark.class_archive.is_file(), "no class archive: `make setup` (make class-archive) makes it"
    options = class_archive_options(settings.spark)
    assert f"-XX:SharedArchiveFile={settings.spark.class_archive}" in options
    assert spark_conf(settings)["spark.driver.extraJavaOptions"].startswith(options)
    log = tmp_path / "classes.log"
    done = subprocess.run([sys.executable, "-c", PROBE, str(log)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # -Xshare:on exits if the archive does not fit this JVM
    lines = log.read_text().splitlines()
    shared = [ln for ln in lines if "source: shared objects file" in ln]
    assert len(shared) > 0.7 * len(lines), f"{len(shared)} of {len(lines)} classes from the archive"
    assert any("org.apache.iceberg." in ln for ln in shared)  # the lake's jars, not only Spark's


def test_the_spark_submit_tasks_get_the_same_jvm_options():
    from tickerlake.core.settings import SparkSettings, get_settings
    from tickerlake.core.spark import spark_conf
    from tickerlake.orchestration.dag_helpers import spark_submit_options

    conf = spark_submit_options("transform_bars")["conf"]
    session = spark_conf(get_settings())
    assert SparkSettings().class_archive == get_settings().spark.class_archive
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        assert conf[key] == session[key]
    assert "-XX:-DontCompileHugeMethods" in conf["spark.driver.extraJavaOptions"]


def test_a_warm_airflow_run_gives_what_a_new_process_gives(stack, settings):
    from tickerlake.dev import airflow_warm
    from tickerlake.dev.airflow_local import airflow_env, run_airflow

    env = {**os.environ, **airflow_env(settings)}
    assert airflow_warm.active_for(env) is not None  # the session's stack started one
    warm = run_airflow(["dags", "list", "--local", "-o", "json"], settings, capture=True)
    airflow = str(REPO_ROOT / ".venv" / "bin" / "airflow")
    cold = subprocess.run([airflow, "dags", "list", "--local", "-o", "json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert warm.returncode == cold.returncode == 0, (warm.stdout + warm.stderr)[-2000:]

    def dag_ids(output: str) -> set[str]:
        [listed] = [ln for ln in output.splitlines() if ln.startswith("[{")]  # the log lines aside
        return {d["dag_id"] for d in json.loads(listed)}

    assert dag_ids(warm.stdout) == dag_ids(cold.stdout) >= {"ohlcv_backfill", "ohlcv_transform", "warehouse_load"}
    failed = run_airflow(["dags", "test", "no_such_dag", "2026-01-02"], settings, capture=True)
    assert failed.returncode == 1
    assert "Dag 'no_such_dag' could not be found" in failed.stdout + failed.stderr


def test_another_airflow_environment_gets_a_new_process(stack, settings):
    from tickerlake.dev import airflow_warm
    from tickerlake.dev.airflow_local import airflow_env

    env = {**os.environ, **airflow_env(settings)}
    assert airflow_warm.active_for(env) is not None
    assert airflow_warm.active_for({**env, "AIRFLOW__CORE__DAGS_FOLDER": "/elsewhere"}) is None
    # other variables (the lake's settings) go with each request to the fork
    assert airflow_warm.active_for({**env, "TICKERLAKE_SOMETHING": "x"}) is not None
