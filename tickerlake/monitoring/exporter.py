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

Batch runs push their own figures to the Pushgateway (tickerlake/core/metrics.py). A section that
cannot be read (the broker is down, a table does not exist yet) is skipped and counted in
`tickerlake_exporter_section_errors`, so one outage never blanks the whole scrape.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

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


class LakeCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.errors: dict[str, int] = {}

    def collect(self) -> Iterator:
        for section in (self._stream, self._tables, self._freshness):
            try:
                yield from list(section())
            except Exception as exc:  # noqa: BLE001 - a section that cannot be read is skipped
                name = section.__name__.strip("_")
                self.errors[name] = self.errors.get(name, 0) + 1
                log.debug("section %s: %s", name, exc)
        errors = CounterMetricFamily("tickerlake_exporter_section_errors",
                                     "scrapes in which a section could not be read", labels=["section"])
        for name, count in sorted(self.errors.items()):
            errors.add_metric([name], count)
        yield errors

    def _stream(self) -> Iterator:
        from tickerlake.core.clients import s3_client

        running = PidFile(pid_path(self.settings, STREAM_JOB)).running_pid() is not None
        yield _gauge("tickerlake_stream_job_up", "1 while the streaming job's process runs",
                     1 if running else 0)
        progress = read_progress(s3_client(self.settings.s3))
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
        for partition, records in sorted(kafka_lag(self.settings, kafka_source_positions(progress)).items()):
            lag.add_metric([str(partition)], records)
        yield lag

    def _tables(self) -> Iterator:
        from tickerlake.core.iceberg import iceberg_catalog

        catalog = iceberg_catalog(self.settings)
        committed = GaugeMetricFamily("tickerlake_table_last_commit_timestamp_seconds",
                                      "the table's current snapshot time (Unix time)", labels=["table"])
        rows = GaugeMetricFamily("tickerlake_table_rows", "rows in the current snapshot", labels=["table"])
        files = GaugeMetricFamily("tickerlake_table_data_files", "data files in the current snapshot",
                                  labels=["table"])
        for table in Table:
            if not catalog.table_exists(table.value):
                continue
            snapshot = catalog.load_table(table.value).current_snapshot()
            if snapshot is None:
                continue
            summary: Any = snapshot.summary or {}  # pyiceberg's Summary: .get, not a dict
            committed.add_metric([table.value], snapshot.timestamp_ms / 1000.0)
            rows.add_metric([table.value], float(summary.get("total-records") or 0))
            files.add_metric([table.value], float(summary.get("total-data-files") or 0))
        yield from (committed, rows, files)

    def _freshness(self) -> Iterator:
        from tickerlake.core.iceberg import iceberg_catalog
        from tickerlake.core.market import sessions_behind

        catalog = iceberg_catalog(self.settings)
        behind = GaugeMetricFamily("tickerlake_dataset_sessions_behind",
                                   "closed exchange sessions missing after the table's latest one",
                                   labels=["table"])
        for table in FRESHNESS_TABLES:
            latest = latest_session(catalog, table) if catalog.table_exists(table.value) else None
            if latest is not None:  # an empty table has no freshness yet (and no target missed)
                behind.add_metric([table.value], sessions_behind(latest))
        yield behind


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
