"""The batch half of `make chaos` (profile `full`): the backfill, the Spark transform and a
warehouse load, each SIGKILLed at a random point and run again, then compared table by table with
a clean run's on a stack of its own.

Each task runs as its own process, as an Airflow task does (`python -m tickerlake.dev.chaos_batch
task NAME` for the backfill, the product's CLIs for the others). The kill lands between 20% and
80% of the task's clean duration. A table's fingerprint is its rows, its keys (from the dataset
declarations) and a hash per key of every other column: `lost` is keys of the clean run missing,
`duplicated` rows beyond one per key, `changed` keys whose values differ.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date

from tickerlake.core.datasets import ANOMALIES, BARS

SYMBOLS = ("CHA", "CHB", "CHC", "CHD")
RANGE = (date(2021, 1, 4), date(2021, 7, 1))
SEED = 31


@dataclass(frozen=True)
class Task:
    name: str
    command: tuple[str, ...]


TASKS = (
    Task("backfill", ("-m", "tickerlake.dev.chaos_batch", "task", "backfill")),
    Task("transform", ("-m", "spark_jobs.transform_bars", "--start", RANGE[0].isoformat(),
                       "--end", RANGE[1].isoformat(), "--interval", "1d", "--source", "synthetic")),
    Task("load", ("-m", "tickerlake.warehouse", "load", "--dataset", "bars_daily", "--dataset", "anomalies")),
)


def start(task: Task, output=subprocess.PIPE) -> subprocess.Popen:
    """`output`: a pipe only for a caller that reads it at once (a full pipe blocks the task)."""
    from tickerlake.core.settings import REPO_ROOT

    return subprocess.Popen([sys.executable, *task.command], cwd=REPO_ROOT, stdout=output,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(task: Task) -> float:
    began = time.monotonic()
    process = start(task)
    out, _ = process.communicate(timeout=900)
    if process.returncode != 0:
        raise RuntimeError(f"{task.name} failed: {out[-2000:]}")
    return time.monotonic() - began


def _digest(values) -> str:
    return hashlib.sha256(repr(tuple(values)).encode()).hexdigest()


def fingerprints(settings) -> dict[str, dict]:
    """table -> {"rows": n, "hashes": {key: digest of the other columns}} for the raw objects, the
    Iceberg tables and the warehouse tables the tasks write."""
    from tickerlake.core.clients import pg_connect, s3_client
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import RAW_OHLCV_PREFIX, Bucket, Table
    from tickerlake.core.s3 import iter_keys
    from tickerlake.warehouse.datasets import Datasets
    from tickerlake.warehouse.postgres import SCHEMA

    out: dict[str, dict] = {}
    s3 = s3_client(settings.s3)
    keys = list(iter_keys(s3, Bucket.RAW.value, RAW_OHLCV_PREFIX))
    out["raw objects"] = {"rows": len(keys), "pairs": [
        (key, hashlib.sha256(s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"].read()).hexdigest())
        for key in keys]}
    catalog = iceberg_catalog(settings)
    for table, spec in ((Table.BARS_1D, BARS), (Table.ANOMALIES, ANOMALIES)):
        frame = catalog.load_table(str(table)).scan().to_pandas()
        values = [c for c in spec.column_names if c not in spec.keys]
        out[str(table)] = {"rows": len(frame), "pairs": [
            (tuple(str(v) for v in row[:len(spec.keys)]), _digest(row[len(spec.keys):]))
            for row in frame[[*spec.keys, *values]].itertuples(index=False)]}
    with pg_connect(settings.pg) as conn:
        for dataset in (Datasets.BARS_DAILY.value, Datasets.ANOMALIES.value):
            columns = dataset.target_columns()
            values = [c for c in columns if c not in dataset.keys]
            rows = conn.execute(f'SELECT {", ".join(f"{c!s}" for c in (*dataset.keys, *values))} '
                                f"FROM {SCHEMA}.{dataset.target}").fetchall()
            out[f"warehouse.{dataset.target}"] = {"rows": len(rows), "pairs": [
                (tuple(str(v) for v in row[:len(dataset.keys)]), _digest(row[len(dataset.keys):])) for row in rows]}
    return out


def compare(clean: dict[str, dict], chaos: dict[str, dict]) -> list[dict]:
    rows = []
    for table, reference in clean.items():
        expected = dict(reference["pairs"])
        got: dict = {}
        for key, digest in chaos[table]["pairs"]:
            got.setdefault(key, digest)
        rows.append({"table": table, "rows": chaos[table]["rows"], "clean_rows": reference["rows"],
                     "lost": len(set(expected) - set(got)),
                     "duplicated": chaos[table]["rows"] - len(got),
                     "changed": sum(1 for k, d in got.items() if k in expected and expected[k] != d)
                     + len(set(got) - set(expected))})
    return rows


def clean_run() -> dict:
    """The tasks once each with no fault, on a stack of their own: durations and fingerprints."""
    from tickerlake.core.settings import get_settings
    from tickerlake.dev.chaos import CHAOS_ENV
    from tickerlake.dev.private import private_stack

    with private_stack(CHAOS_ENV):
        durations = {task.name: finish(task) for task in TASKS}
        return {"durations": durations, "fingerprints": fingerprints(get_settings())}


def killed_run(settings, clean: dict, rng: random.Random, began: float):
    """Each task SIGKILLed at a random point of its run, then run again to the end."""
    from tickerlake.dev.chaos import Fault, Outcome

    faults = {"backfill": Fault.KILL_BACKFILL, "transform": Fault.KILL_TRANSFORM, "load": Fault.KILL_LOAD}
    outcomes = []
    for task in TASKS:
        duration, tries = clean["durations"][task.name], 0
        while True:
            process = start(task, output=subprocess.DEVNULL)  # nobody reads it while it runs; the rerun's counts
            at = time.monotonic()
            try:
                # A task can run faster than in the clean run (a warm cache, an idle machine): then
                # it finishes before the kill, and the next try aims inside the time it took (the
                # tasks are idempotent, so an extra run changes nothing).
                process.wait(timeout=rng.uniform(0.2, 0.8) * duration)
                duration, tries = time.monotonic() - at, tries + 1
                if tries < 3:
                    continue
                killed = False
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the task and its children (Spark's JVM)
                killed = True
            break
        killed_after = time.monotonic() - at
        process.communicate(timeout=60)
        rerun = finish(task)
        outcomes.append(Outcome(faults[task.name], at - began, True, rerun,
                                f"killed {killed_after:.1f}s into a {duration:.1f}s task; "
                                f"the rerun took {rerun:.1f}s" if killed else "finished before the kill, 3 tries"))
    return outcomes, compare(clean["fingerprints"], fingerprints(settings))


def _backfill() -> int:
    from ingestion.backfill import backfill
    from ingestion.sources.synthetic import SyntheticMarket
    from tickerlake.core.clients import s3_client
    from tickerlake.core.datasets import BarInterval
    from tickerlake.core.settings import get_settings

    backfill(SyntheticMarket(seed=SEED), list(SYMBOLS), *RANGE, BarInterval.DAILY, s3_client(get_settings().s3))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["task", "backfill"]:
        sys.exit(_backfill())
    sys.exit(f"usage: python -m {__spec__.name} task backfill")
