"""The main job on the embedded local stack: `make demo` (after `make setup`).

1. brings the stack up (data services, Prometheus, Alertmanager, Pushgateway, exporter, dashboard)
   and initialises it;
2. `lake_smoke`: Spark MERGEs into an Iceberg table, read back with pyiceberg;
3. `ohlcv_backfill` then `ohlcv_transform` (batch lane) for the default symbols: half a year of
   daily bars up to the last session closed before today (with one bad row of each kind injected,
   to show the quarantine) and the last two sessions of one-minute bars, all through
   `airflow dags test`;
4. `stream_supervisor` (streaming lane) starts the synthetic producer and the Spark streaming job
   (Spark's Kafka source), the realtime tables fill for a bounded time (shown every 2 s), then it
   stops them and checks that the stream's 1-minute bars equal a batch recompute from the ticks;
5. `warehouse_load` COPYs the processed and realtime Iceberg tables' data files into the Postgres warehouse (the
   consistency check is its last task);
6. prints rows per layer, the analyst views' first rows, the anomalies found and where to look
   (with the dashboard's, Prometheus's and Alertmanager's addresses).

Each step is numbered and long steps print their elapsed time while they run.

Rerunning the demo changes no batch data: backfill, transform and load reproduce the same tables
(same rows, no new snapshots where nothing changed). The streaming step does add data on each run:
the producer sends new events (new event ids) for the bounded stream, about 4,500 per run, and
each lands exactly once in `realtime.ticks`, updating that minute's live bars.
"""
from __future__ import annotations

import subprocess
import sys
import time

from tickerlake.core.errors import StackError, one_line_errors
from tickerlake.core.names import Namespace
from tickerlake.core.settings import REPO_ROOT, get_settings
from tickerlake.dev.airflow_local import run_airflow
from tickerlake.dev.airflow_warm import warm_airflow
from tickerlake.dev.services import monitoring_services, services

STREAM_SECONDS = 90  # the bounded streaming run
DAILY_DAYS = 183  # about half a year of daily bars
MINUTE_SESSIONS = 2


def demo_intervals() -> dict[str, tuple[str, str]]:
    """The recent sessions up to the last one closed before now: [start, end) per interval.

    Relative to today so that the analyst views' "last 30 days" return rows and the live stream
    continues the same market; reruns on one day backfill the same interval (and change nothing)."""
    from datetime import timedelta

    from tickerlake.core.market import last_closed_session, sessions_in_range

    last = last_closed_session()
    end = last + timedelta(days=1)
    recent = sessions_in_range(last - timedelta(days=14), end)[-MINUTE_SESSIONS:]
    return {"1d": ((last - timedelta(days=DAILY_DAYS)).isoformat(), end.isoformat()),
            "1m": (recent[0].isoformat(), end.isoformat())}


def logical_date() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


STEPS = 9
_step_number = 0


def step(title: str) -> float:
    global _step_number
    _step_number += 1
    print(f"\n==> [{_step_number}/{STEPS}] {title}", flush=True)
    return time.monotonic()


class Ticker:
    """Prints the elapsed time every `every` seconds while a long call runs (a progress display
    that works in any terminal and in CI logs)."""

    def __init__(self, label: str, every: float = 15.0):
        import threading

        self.label, self.every, self.stop = label, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(self.every):
            print(f"    ... {self.label}: {time.monotonic() - started:.0f}s", flush=True)

    def __enter__(self) -> "Ticker":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def done(started: float, note: str = "") -> None:
    print(f"    done in {time.monotonic() - started:.1f}s {note}".rstrip(), flush=True)


def run_dag(dag_id: str, settings, conf: dict | None = None, tag: str = "") -> None:
    import json

    log = settings.stack.state_dir / "logs" / f"dags-test-{dag_id}{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    args = ["dags", "test", dag_id, logical_date()] + (["--conf", json.dumps(conf)] if conf else [])
    with Ticker(f"{dag_id} running"):
        result = run_airflow(args, settings, capture=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StackError(f"airflow dags test {dag_id} failed (exit {result.returncode}); log: {log}")
    print(f"    airflow dags test {dag_id}: success (log: {log})")


@one_line_errors
def main() -> int:
    settings = get_settings()
    started = step("Stack: S3 server, Kafka broker, Postgres, Prometheus, Alertmanager, dashboard (127.0.0.1)")
    for service in services(settings) + monitoring_services(settings):
        print(f"    {service.name:<12} {service.up():<16} {service.address}")
    done(started)

    started = step("Init: buckets, topics, warehouse database and roles (idempotent)")
    subprocess.run([sys.executable, "-m", "minio_init"], check=True, cwd=REPO_ROOT)
    done(started)

    # every DAG below runs in a fork of one process that imported Airflow once (about 12 s a DAG)
    with warm_airflow(settings):
        run_pipeline(settings)
    print_where_to_look(settings)
    return 0


def run_pipeline(settings) -> None:
    """The DAGs in order, as a data engineer would trigger them, with what each left behind."""
    started = step("lake_smoke DAG: Spark MERGE into Iceberg on s3a://, via airflow dags test")
    run_dag("lake_smoke", settings)
    done(started)

    started = step("Read back with pyiceberg (same JDBC catalog)")
    from tickerlake.core.iceberg import iceberg_catalog

    table = iceberg_catalog(settings).load_table(f"{Namespace.PROCESSED.value}.smoke_roundtrip")
    arrow = table.scan().to_arrow()
    print(f"    {settings.iceberg.catalog}.processed.smoke_roundtrip: {arrow.num_rows} rows, "
          f"{len(table.snapshots())} snapshot(s), location {table.location()}")
    print(f"    first rows: {arrow.slice(0, 3).to_pylist()}")
    done(started)

    for interval, (start, end) in demo_intervals().items():
        started = step(f"Batch lane, {interval} bars {start}..{end}: ohlcv_backfill -> ohlcv_transform")
        conf = {"start": start, "end": end, "interval": interval}
        run_dag("ohlcv_backfill", settings, {**conf, "inject_bad_rows": interval == "1d"}, f"-{interval}")
        run_dag("ohlcv_transform", settings, conf, f"-{interval}")
        done(started)

    started = step("Streaming lane: stream_supervisor starts producer -> Kafka -> Spark Structured Streaming")
    from tickerlake.core.iceberg import iceberg_catalog

    before = realtime_counts(iceberg_catalog(settings))
    run_dag("stream_supervisor", settings, {"demo_producer": True}, "-start")
    try:
        watch_realtime(settings, before, seconds=STREAM_SECONDS)
    finally:
        run_dag("stream_supervisor", settings, {"action": "stop"}, "-stop")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    run_dag("stream_supervisor", settings, {"action": "compare", "compare_date": today}, "-compare")
    print("    stream equals batch: the 1-minute bars recomputed from realtime.ticks equal realtime.bars_1m")
    done(started)

    started = step("Warehouse: warehouse_load COPYs the lake's Iceberg data files into Postgres, then checks it")
    run_dag("warehouse_load", settings)
    done(started)

    started = step("What is in the lake and the warehouse")
    print_lake_summary(settings)
    print_warehouse_summary(settings)
    done(started)


def print_where_to_look(settings) -> None:
    pg = settings.pg
    print(f"""
Where to look
  S3 console (bucket browser):  {settings.s3.console_url}   (buckets raw, realtime, processed)
  Raw CSV:                      s3://raw/ohlcv/interval=<1d|1m>/source=synthetic/symbol=<S>/month=<YYYY-MM>/bars.csv
  Processed (Iceberg only):     s3://processed/iceberg/bars_1d|bars_1m|anomalies/ (tables below)
  Quarantine (with reasons):    s3://processed/quarantine/ohlcv/interval=<1d|1m>/date=<D>/
  Repaired bars (kept):         s3://processed/repairs/ohlcv/interval=<1d|1m>/date=<D>/
  Quality results:              s3://processed/quality/bars/
  Transform summaries:          s3://processed/transform/bars/  (each with the snapshot its gate validated)
  Iceberg tables:               {settings.iceberg.catalog}.processed.bars_1d, bars_1m, anomalies;
                                {settings.iceberg.catalog}.realtime.ticks, bars_1m, bars_5m (JDBC catalog in Postgres)
  Realtime record archive:      s3://raw/archive/ticks/batch_id=<N>/
  Realtime quarantine:          {settings.iceberg.catalog}.realtime.quarantine_ticks (with reasons)
  S3 API:                       {settings.s3.endpoint_url}
  Kafka:                        {settings.kafka.bootstrap_servers}
  Postgres warehouse (analyst): psql -h {pg.host} -p {pg.port} -U {pg.analyst_user} {pg.database}
                                (password: TICKERLAKE_PG_ANALYST_PASSWORD in .env; views warehouse.v_*)
  Airflow web UI:               make airflow-ui
{monitoring_urls(settings)}
  Stack status / stop:          make status / make down""")


def monitoring_urls(settings) -> str:
    m = settings.monitoring
    return (f"  Dashboard:                    http://127.0.0.1:{m.dashboard_port}  (Market, Live, Pipeline)\n"
            f"  Prometheus (metrics, alerts): {m.prometheus_url}  (rules: /alerts)\n"
            f"  Alertmanager:                 {m.alertmanager_url}\n"
            f"  Metrics exporter:             http://127.0.0.1:{m.exporter_port}/metrics")


def _producer_started_at(settings) -> float | None:
    """When the supervised demo producer's process started (the stream's start), by its PID."""
    import psutil

    from tickerlake.streaming.supervisor import PRODUCER, running

    pid = running(settings, PRODUCER)
    try:
        return psutil.Process(pid).create_time() if pid is not None else None
    except psutil.NoSuchProcess:
        return None


def _first_send_after(catalog, since: float) -> float | None:
    """The earliest event time (the synthetic producer stamps it at sending) in realtime.ticks at
    or after `since`: when the stream's first event was sent."""
    from datetime import UTC, datetime

    from pyiceberg.expressions import GreaterThanOrEqual

    table = catalog.load_table("realtime.ticks")
    start = datetime.fromtimestamp(since, UTC)
    times = table.scan(row_filter=GreaterThanOrEqual("event_time", start.isoformat()),  # type: ignore[call-arg,arg-type]
                       selected_fields=("event_time",)).to_arrow().column("event_time")
    return min(times.to_pylist()).timestamp() if len(times) else None


REALTIME_TABLES = ("realtime.ticks", "realtime.bars_1m", "realtime.bars_5m")


def realtime_counts(catalog) -> dict[str, int]:
    """Rows in each realtime table, from its current snapshot's summary (no scan)."""
    out = {}
    for table in REALTIME_TABLES:
        snapshot = catalog.load_table(table).current_snapshot() if catalog.table_exists(table) else None
        out[table] = int(snapshot.summary.get("total-records") or 0) if snapshot and snapshot.summary else 0
    return out


def watch_realtime(settings, before: dict[str, int], seconds: float) -> None:
    """Show the realtime tables filling while the supervised stream runs, and when each table
    first got rows of this run, from the stream's first event. The producer starts with the job
    and prepares during its warm-up, then sends once the job reports ready: the first event's send
    is the stream's start. `before`: the counts before the stream_supervisor run (a rerun of the
    demo starts with rows)."""
    from tickerlake.core.iceberg import iceberg_catalog

    catalog = iceberg_catalog(settings)
    origin = time.time()
    producer_started = _producer_started_at(settings) or origin
    shown, first_rows = -10.0, {}
    while time.time() - origin < seconds:
        now = realtime_counts(catalog)
        elapsed = time.time() - origin
        for table, count in now.items():
            if count > before[table] and table not in first_rows:
                first_rows[table] = time.time()  # at most one poll (0.5 s) late
        if elapsed - shown >= 2 or elapsed < 12:
            shown = elapsed
            print(f"    {elapsed:>5.1f}s  " + "  ".join(f"{t}: {n:,}" for t, n in now.items()), flush=True)
        time.sleep(0.5)
    first_send = _first_send_after(catalog, producer_started)
    for table in REALTIME_TABLES:
        if table not in first_rows or first_send is None:
            print(f"    {table}: no new rows", flush=True)
            continue
        print(f"    {table}: first rows {first_rows[table] - first_send:.1f}s after the stream's first event was "
              f"sent", flush=True)
    if first_send is not None:
        print(f"    (the producer process started {first_send - producer_started:.1f}s before its first send: "
              f"it prepares while the job warms up, and sends once the job reports ready)", flush=True)


def print_lake_summary(settings) -> None:
    from tickerlake.core.clients import s3_client
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import Bucket, Table, quarantine_prefix
    from tickerlake.core.s3 import iter_keys

    s3 = s3_client(settings.s3)

    def objects(bucket: Bucket, prefix: str) -> int:
        return sum(1 for _ in iter_keys(s3, bucket.value, prefix))

    catalog = iceberg_catalog(settings)
    print(f"    raw CSV objects:          {objects(Bucket.RAW, 'ohlcv/'):>8,}")
    for table in Table:
        rows = catalog.load_table(table.value).scan().to_arrow().num_rows
        print(f"    iceberg {table.value:<18}{rows:>8,} rows")
    import pyarrow.dataset as ds

    from tickerlake.core.clients import arrow_s3_filesystem

    quarantine = ds.dataset(f"{Bucket.PROCESSED.value}/{quarantine_prefix('1d')}".rstrip("/"),
                            filesystem=arrow_s3_filesystem(settings.s3), format="parquet",
                            partitioning="hive").to_table(columns=["symbol", "timestamp", "reason"])
    print(f"    quarantined 1d rows:      {quarantine.num_rows:>8,}  reasons: "
          f"{sorted(set(quarantine.column('reason').to_pylist()))}")
    anomalies = catalog.load_table(Table.ANOMALIES.value).scan().to_pandas()
    if len(anomalies):
        top = anomalies.sort_values("timestamp").tail(5)[["symbol", "interval", "kind", "date", "close",
                                                           "return_zscore", "volume_ratio"]]
        print("    latest anomalies:\n" + "\n".join("      " + line for line in
                                                       top.to_string(index=False).splitlines()))


def print_warehouse_summary(settings) -> None:
    from tickerlake.warehouse import open_warehouse
    from tickerlake.warehouse.pipeline import preview_views

    with open_warehouse(settings) as warehouse:
        print(f"    warehouse: {warehouse.label}")
        for table in ("dim_symbol", "bars_daily", "bars_intraday", "anomalies", "ticks", "load_ledger"):
            print(f"    warehouse.{table:<16}{warehouse.count(table):>8,} rows")
    for view, (columns, rows) in preview_views(settings, rows=3).items():
        shown = columns[:6]
        print(f"    {view} ({', '.join(shown)}{', ...' if len(columns) > 6 else ''}):")
        for row in rows:
            print("      " + "  ".join(_cell(v) for v in row[:6]))
        if not rows:
            print("      (no rows)")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def cli() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.demo",
                                     description="the main job on the local stack (make demo)")
    parser.add_argument("--urls", action="store_true", help="only print the dashboard's and the "
                                                             "monitoring services' addresses")
    if parser.parse_args().urls:
        print(monitoring_urls(get_settings()))
        return 0
    return main()


if __name__ == "__main__":
    sys.exit(cli())

