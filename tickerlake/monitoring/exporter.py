"""tickerlake's Prometheus exporter: the stream's and the lake's state, read at each scrape.

`python -m tickerlake.monitoring.exporter` serves /metrics on 127.0.0.1 (the exporter port) and
receives Airflow's StatsD metrics on the StatsD port (tickerlake/monitoring/statsd.py). Each
scrape reads, and writes nothing:

- the streaming job's progress file (batches, events, late and quarantined counts, rows/s, the
  last micro-batch's duration, when it last committed) and whether its process runs;
- the topic's lag behind the job's committed offsets, per partition;
- each Iceberg table's last commit time, rows and data files (snapshot summaries: no scan);
- how many closed sessions each processed bar table is behind (the exchange calendar: a
  weekend or a holiday is not late).

A scrape's cost does not grow with the lake: the clients (S3, Kafka, the catalog's connection
pool) are kept between scrapes and rebuilt only after a section failed, and one catalog query
gives every table's metadata location: a table's metadata is read again only when a commit
changed it (a streaming table's metadata file grows with its snapshots, and the freshness reads
its manifests).

Batch runs push their own figures to the Pushgateway (tickerlake/core/metrics.py). A section that
cannot be read (the broker is down, a table does not exist yet) is skipped and counted in
`tickerlake_exporter_section_errors`, so one outage never blanks the whole scrape.
"""
from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tickerlake.core.errors import one_line_errors
from tickerlake.core.names import Table
from tickerlake.core.processes import PidFile
from tickerlake.core.settings import Settings, get_settings
from tickerlake.core.stream_progress import (
    STREAM_JOB,
    TICKS_QUERY,
    kafka_lag,
    kafka_source_positions,
    pid_path,
    read_progress,
)

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
# the processed tables with a freshness target: one row per session and symbol
FRESHNESS_TABLES = (Table.BARS_1D, Table.BARS_1M)


def _gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None):
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    if value is not None:
        family.add_metric(list((labels or {}).values()), value)
    return family


class TableFigures(NamedTuple):
    """What the exporter publishes of one table, as of one metadata file."""

    committed_at: float | None
    rows: float
    data_files: float
    latest_session: date | None  # FRESHNESS_TABLES only


class LakeCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.errors: dict[str, int] = {}
        self._clients: dict[str, Any] = {}
        self._figures: dict[Table, tuple[str, TableFigures]] = {}  # by the metadata location read
        self._lock = threading.Lock()  # the HTTP server scrapes from a thread per request

    def _client(self, name: str, build):
        if name not in self._clients:
            self._clients[name] = build()
        return self._clients[name]

    def collect(self) -> Iterator:
        with self._lock:
            return iter(self._collect())

    def _collect(self) -> list:
        families = []
        for section in (self._stream, self._tables, self._freshness):
            try:
                families += list(section())
            except Exception as exc:  # noqa: BLE001 - a section that cannot be read is skipped
                name = section.__name__.strip("_")
                self.errors[name] = self.errors.get(name, 0) + 1
                self._clients.clear()  # a restarted service: connect afresh next time
                log.debug("section %s: %s", name, exc)
        errors = CounterMetricFamily("tickerlake_exporter_section_errors",
                                     "scrapes in which a section could not be read", labels=["section"])
        for name, count in sorted(self.errors.items()):
            errors.add_metric([name], count)
        return families + [errors]

    def _stream(self) -> Iterator:
        from tickerlake.core.clients import kafka_consumer, s3_client

        running = PidFile(pid_path(self.settings, STREAM_JOB)).running_pid() is not None
        yield _gauge("tickerlake_stream_job_up", "1 while the streaming job's process runs",
                     1 if running else 0)
        progress = read_progress(self._client("s3", lambda: s3_client(self.settings.s3)))
        if progress is None:
            return
        counters = progress.get("counters") or {}
        ticks = (progress.get("queries") or {}).get(TICKS_QUERY) or {}
        yield _gauge("tickerlake_stream_last_progress_timestamp_seconds",
                     "when the job last reported progress (Unix time)", progress.get("written_at"))
        yield _gauge("tickerlake_stream_last_commit_timestamp_seconds",
                     "when the job last committed ticks to Iceberg (Unix time)", counters.get("last_commit_at"))
        for key, doc in (("batches", "micro-batches committed"), ("ticks", "events written to realtime.ticks"),
                         ("late", "events later than the watermark, quarantined"),
                         ("malformed", "malformed records, quarantined"),
                         ("bar_windows", "1-minute bar windows updated")):
            yield CounterMetricFamily(f"tickerlake_stream_{key}", f"{doc}, since the job started",
                                      value=float(counters.get(key) or 0))
        yield _gauge("tickerlake_stream_input_rows_per_second", "events/s arriving (last micro-batch)",
                     ticks.get("inputRowsPerSecond"))
        yield _gauge("tickerlake_stream_processed_rows_per_second", "events/s processed (last micro-batch)",
                     ticks.get("processedRowsPerSecond"))
        duration = (ticks.get("durationMs") or {}).get("triggerExecution")
        yield _gauge("tickerlake_stream_batch_duration_seconds", "the last micro-batch's duration",
                     duration / 1000.0 if duration is not None else None)
        lag = GaugeMetricFamily("tickerlake_stream_lag_records",
                                "records in the topic past the job's committed offsets", labels=["partition"])
        consumer = self._client("kafka", lambda: kafka_consumer(self.settings.kafka, group_id=None))
        for partition, records in sorted(kafka_lag(self.settings, kafka_source_positions(progress),
                                                   consumer=consumer).items()):
            lag.add_metric([str(partition)], records)
        yield lag

    def _table_figures(self) -> dict[Table, TableFigures]:
        """Every existing table's figures, its metadata read only if it changed since last time."""
        from pyiceberg.catalog.sql import IcebergTables
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from tickerlake.core.iceberg import iceberg_catalog

        catalog = self._client("catalog", lambda: iceberg_catalog(self.settings))
        # the JDBC catalog's own table (Spark's JdbcCatalog and pyiceberg's SqlCatalog share it)
        with Session(catalog.engine) as session:
            locations = {f"{ns}.{name}": location for ns, name, location in session.execute(
                select(IcebergTables.table_namespace, IcebergTables.table_name, IcebergTables.metadata_location)
                .where(IcebergTables.catalog_name == catalog.name))}
        figures = {}
        for table in Table:
            location = locations.get(table.value)
            if location is None:
                continue
            cached = self._figures.get(table)
            if cached is None or cached[0] != location:
                cached = (location, read_figures(catalog, table))
                self._figures[table] = cached
            figures[table] = cached[1]
        return figures

    def _tables(self) -> Iterator:
        committed = GaugeMetricFamily("tickerlake_table_last_commit_timestamp_seconds",
                                      "the table's current snapshot time (Unix time)", labels=["table"])
        rows = GaugeMetricFamily("tickerlake_table_rows", "rows in the current snapshot", labels=["table"])
        files = GaugeMetricFamily("tickerlake_table_data_files", "data files in the current snapshot",
                                  labels=["table"])
        for table, figures in self._table_figures().items():
            if figures.committed_at is None:
                continue
            committed.add_metric([table.value], figures.committed_at)
            rows.add_metric([table.value], figures.rows)
            files.add_metric([table.value], figures.data_files)
        yield from (committed, rows, files)

    def _freshness(self) -> Iterator:
        from tickerlake.core.market import sessions_behind

        behind = GaugeMetricFamily("tickerlake_dataset_sessions_behind",
                                   "closed exchange sessions missing after the table's latest one",
                                   labels=["table"])
        for table, figures in self._table_figures().items():
            if figures.latest_session is not None:  # an empty table has no freshness yet (no target missed)
                behind.add_metric([table.value], sessions_behind(figures.latest_session))
        yield behind


def read_figures(catalog, table: Table) -> TableFigures:
    """One table's figures from its current snapshot's summary (and partitions, for freshness)."""
    snapshot = catalog.load_table(table.value).current_snapshot()
    if snapshot is None:
        return TableFigures(None, 0.0, 0.0, None)
    summary: Any = snapshot.summary or {}  # pyiceberg's Summary: .get, not a dict
    return TableFigures(snapshot.timestamp_ms / 1000.0, float(summary.get("total-records") or 0),
                        float(summary.get("total-data-files") or 0),
                        latest_session(catalog, table) if table in FRESHNESS_TABLES else None)


def latest_session(catalog, table: Table) -> date | None:
    """The latest `date` partition of a table, from its partition statistics (no data scan)."""
    loaded = catalog.load_table(table.value)
    if loaded.current_snapshot() is None:
        return None
    partitions = loaded.inspect.partitions()
    if partitions.num_rows == 0:
        return None
    days = [p.get("date") for p in partitions.column("partition").to_pylist()]
    found = [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in days if d is not None]
    return max(found) if found else None


def serve(settings: Settings, host: str = LOOPBACK) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from tickerlake.monitoring.statsd import StatsdCollector

    registry = CollectorRegistry()
    registry.register(LakeCollector(settings))
    statsd = StatsdCollector()
    registry.register(statsd)
    statsd.serve(host, settings.monitoring.statsd_port)
    start_http_server(settings.monitoring.exporter_port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics, StatsD on udp://%s:%d", host,
             settings.monitoring.exporter_port, host, settings.monitoring.statsd_port)
    while True:
        time.sleep(3600)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.monitoring.exporter",
                                     description="serve tickerlake's metrics for Prometheus")
    parser.add_argument("--host", default=LOOPBACK, help="listen address (compose: every interface of its "
                                                         "container; the port is not published)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(get_settings(), args.host)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
