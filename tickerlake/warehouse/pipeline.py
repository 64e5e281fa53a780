"""The load and the check as plain functions (used by the load DAG, the CLI and the demo)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tickerlake.core.clients import s3_client
from tickerlake.core.metrics import push_run
from tickerlake.core.settings import Settings
from tickerlake.warehouse import open_warehouse
from tickerlake.warehouse.base import LoadReport, PartitionCheck, check_dataset, load_dataset, raise_on_mismatch
from tickerlake.warehouse.datasets import Dataset, Datasets

# The analyst views, each with the order its preview is shown in.
VIEW_ORDER = {"v_latest_quote": (("symbol", "ASC"),),
              "v_daily_top_movers": (("date", "DESC"), ("mover_rank", "ASC")),
              "v_recent_anomalies": (("days_ago", "ASC"), ("symbol", "ASC")),
              "v_indicator_snapshot": (("symbol", "ASC"),)}
VIEWS = tuple(VIEW_ORDER)


def _chosen(names: Iterable[str] | None) -> list[Dataset]:
    return Datasets.all() if not names else [Datasets.named(n) for n in names]


def load(settings: Settings, names: Iterable[str] | None = None, *, reload: bool = False,
         snowflake_connect: Callable[[], object] | None = None) -> list[LoadReport]:
    """Load the chosen datasets (all by default)."""
    datasets = _chosen(names)
    s3 = s3_client(settings.s3)
    reports = []
    with open_warehouse(settings, snowflake_connect) as warehouse:
        warehouse.ensure_schema()
        for dataset in datasets:
            began = time.monotonic()
            try:
                report = load_dataset(warehouse, dataset, s3, reload=reload,
                                      workers=settings.warehouse.load_workers)
            except Exception:
                push_run("warehouse_load", {"dataset": dataset.name}, rows=0,
                         seconds=time.monotonic() - began, failed=True, settings=settings.monitoring)
                raise
            push_run("warehouse_load", {"dataset": dataset.name}, rows=report.rows_loaded,
                     seconds=time.monotonic() - began, partitions=len(report.partitions_loaded),
                     settings=settings.monitoring)
            reports.append(report)
    return reports


def check(settings: Settings, names: Iterable[str] | None = None, *, full: bool = False,
          snowflake_connect: Callable[[], object] | None = None) -> list[PartitionCheck]:
    """Compare the partitions loaded since the last check (every partition, the lake read again,
    with `full`); raises ConsistencyError naming the partitions that differ."""
    s3 = s3_client(settings.s3)
    with open_warehouse(settings, snowflake_connect) as warehouse:
        checks = [c for d in _chosen(names) for c in check_dataset(warehouse, d, s3, full=full)]
    raise_on_mismatch(checks)
    return checks


def preview_views(settings: Settings, rows: int = 3,
                  snowflake_connect: Callable[[], object] | None = None) -> dict[str, tuple[list[str], list[tuple]]]:
    """Each analyst view's columns and first rows (for the demo's summary)."""
    out = {}
    with open_warehouse(settings, snowflake_connect) as warehouse:
        for view in VIEWS:
            order = ", ".join(f"{warehouse.dialect.ident(column)} {direction}"
                              for column, direction in VIEW_ORDER[view])
            out[view] = warehouse.query_table(
                f"SELECT * FROM {warehouse.table(view)} ORDER BY {order} LIMIT {int(rows)}")
    return out
