"""Benchmark: what a task pays before it works, and what the class archive and the warm Airflow save.

    .venv/bin/python -m benchmarks.startup [--runs 3]

On a private stack (nothing shared with `make up`), alternating each pair so that both sides see
the same machine:

- Spark: a new driver JVM through the lake's session builder, to its first query's result (a
  small aggregation), without and with the class archive (`make class-archive`);
- Airflow: `airflow dags test ohlcv_backfill` (Python tasks only, one symbol-month) as a new
  `airflow` process, and forked from the warm process (tickerlake/dev/airflow_warm.py).

Prints each run's seconds, the medians and the ratio (baseline ÷ faster).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PROBE = """
import sys, time
began = time.perf_counter()
from tickerlake.core.spark import build_spark_session
extra = {"spark.sql.defaultCatalog": "spark_catalog", "spark.ui.enabled": "false"}
if sys.argv[1] == "off":
    extra["spark.driver.extraJavaOptions"] = "-Xshare:auto"
spark = build_spark_session("startup-probe", extra_conf=extra)
spark.range(100000).selectExpr("id % 13 AS k").groupBy("k").count().collect()
print(f"SECONDS {time.perf_counter() - began:.2f}")
spark.stop()
"""


def spark_start(archive: bool) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, "on" if archive else "off"], capture_output=True,
                          text=True, timeout=300)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("SECONDS ")]
    if not lines:
        raise SystemExit(f"the Spark probe failed: {done.stderr[-1500:]}")
    return float(lines[-1].split()[1])


def dags_test(settings, warm: bool) -> float:
    from tickerlake.dev import airflow_warm
    from tickerlake.dev.airflow_local import run_airflow

    args = ["dags", "test", "ohlcv_backfill", "2025-02-05", "--conf", '{"symbols": ["AAPL"]}']
    saved = airflow_warm._active
    if not warm:
        airflow_warm._active = None  # the cold path, as without the warm process
    try:
        began = time.perf_counter()
        done = run_airflow(args, settings, capture=True)
        seconds = time.perf_counter() - began
    finally:
        airflow_warm._active = saved
    if done.returncode != 0:
        raise SystemExit(f"dags test failed: {(done.stdout + done.stderr)[-1500:]}")
    return seconds


def report(name: str, baseline: list[float], faster: list[float], labels: tuple[str, str]) -> None:
    b, f = statistics.median(baseline), statistics.median(faster)
    print(f"{name}: {labels[0]} {', '.join(f'{x:.1f}' for x in baseline)} s (median {b:.1f}); "
          f"{labels[1]} {', '.join(f'{x:.1f}' for x in faster)} s (median {f:.1f}); ratio {b / f:.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from tickerlake.core.settings import get_settings
    from tickerlake.core.spark import class_archive_options
    from tickerlake.dev.airflow_local import run_airflow
    from tickerlake.dev.airflow_warm import warm_airflow
    from tickerlake.dev.private import private_stack

    if not class_archive_options(get_settings().spark):
        raise SystemExit("no class archive: run `make class-archive` first")
    without, with_archive = [], []
    for _ in range(args.runs):
        without.append(spark_start(archive=False))
        with_archive.append(spark_start(archive=True))
    report("Spark driver to its first result", without, with_archive, ("no archive", "class archive"))

    with private_stack({"TICKERLAKE_SPARK_DRIVER_MEMORY": "1g"}):
        settings = get_settings()
        run_airflow(["version"], settings, capture=True)  # migrates the metadata DB (not timed)
        cold, warm = [], []
        with warm_airflow(settings):
            for _ in range(args.runs):
                cold.append(dags_test(settings, warm=False))
                warm.append(dags_test(settings, warm=True))
        report("airflow dags test ohlcv_backfill", cold, warm, ("new process", "warm fork"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
