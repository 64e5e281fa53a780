"""ohlcv_backfill: historical bars into the raw bucket as CSV, for each run's data interval."""
from __future__ import annotations

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

from ingestion.backfill import DEFAULT_SYMBOLS, plan_jobs, run_job
from ingestion.sources.base import SourceName
from tickerlake.orchestration.assets import RAW_OHLCV
from tickerlake.orchestration.dag_helpers import (
    DEFAULT_ARGS,
    HISTORY_START_DATE,
    interval_from_context,
    source_options,
)

DOC = """
### ohlcv_backfill

Backfills OHLCV bars into `s3://raw/ohlcv/interval=<1d|1m>/source=<source>/symbol=<S>/month=<YYYY-MM>/bars.csv`
for the run's **data interval**
(never the wall clock): a run covering part of a month replaces that month object's rows of its
own sessions (a conditional write: concurrent runs of one month keep each other's rows), so a
rerun writes exactly the same objects with the same bytes.

- Symbols are split into batches, one **mapped task** per batch (`batch_size`).
- Works with `catchup` and with `airflow backfill create --dag-id ohlcv_backfill --from-date ... --to-date ...`.
- A manual run may set `start`/`end` (ISO dates, end exclusive) to cover a range at once.
- Emits the `raw_ohlcv` asset (with source, interval, start, end in the event's extra);
  `ohlcv_transform` is scheduled on it.

Sources: `synthetic` (deterministic, offline default), `yfinance`, `alphavantage` (key: the
`alphavantage_default` connection's password or `TICKERLAKE_ALPHAVANTAGE_API_KEY`), `csv`
(`csv_directory`: tickerlake's layout or the usual one-file-per-symbol download). A requested
symbol the source returned no bar of is a warning in the task log and listed in its result; bad
input (unknown symbol, bad file, refused key) fails its batch at once, without retries.

Any past date from 1980 on can be backfilled (`airflow dags test ohlcv_backfill 1995-03-01`, or
`start`/`end`); session dates are each symbol's exchange's (`VOD.L`: London).
"""


@dag(
    dag_id="ohlcv_backfill",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=HISTORY_START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    doc_md=DOC,
    tags=["tickerlake", "batch", "raw"],
    params={
        "source": Param("synthetic", enum=[s.value for s in SourceName]),
        "interval": Param("1d", enum=["1d", "1m"]),
        "symbols": Param(list(DEFAULT_SYMBOLS), type="array", minItems=1),
        "batch_size": Param(2, type="integer", minimum=1),
        "start": Param(None, type=["null", "string"], format="date", description="override (manual range)"),
        "end": Param(None, type=["null", "string"], format="date", description="exclusive"),
        "csv_directory": Param("data/csv", type="string"),
        "inject_bad_rows": Param(False, type="boolean",
                                 description="synthetic only: append one bad row of each kind (demos, tests)"),
    },
)
def ohlcv_backfill():
    @task
    def plan(params=None, data_interval_start=None, data_interval_end=None) -> list[dict]:
        start, end = interval_from_context(params, data_interval_start, data_interval_end)
        return plan_jobs(params["source"], params["interval"], params["symbols"], start, end,
                         params["batch_size"], params["inject_bad_rows"])

    @task(max_active_tis_per_dagrun=4)
    def backfill_batch(job: dict, params=None) -> dict:
        from ingestion.sources import SourceError, SourceUnavailable

        try:
            return run_job(job, source_options(job["source"], params["csv_directory"]))
        except SourceUnavailable:
            raise  # throttled or unreachable after the source's own retries: Airflow retries later
        except SourceError as exc:  # an unknown symbol, a bad file or key: a retry will not fix it
            raise AirflowFailException(str(exc)) from None

    @task(outlets=[RAW_OHLCV])
    def publish(results: list[dict], jobs: list[dict], outlet_events=None) -> dict:
        first = jobs[0]
        summary = {"source": first["source"], "interval": first["interval"], "start": first["start"],
                   "end": first["end"], "objects": sum(r["objects"] for r in results),
                   "rows": sum(r["rows"] for r in results)}
        outlet_events[RAW_OHLCV].extra = summary
        return summary

    jobs = plan()
    publish(backfill_batch.expand(job=jobs), jobs)


ohlcv_backfill()
