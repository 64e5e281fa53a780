"""Batch runs report their figures to Prometheus's Pushgateway (the standard way for jobs that
end before a scrape could see them).

One group per (job, key): a rerun replaces its group's figures instead of adding to them. A
push that fails logs one warning and never fails the task: metrics must not stop the pipeline.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from tickerlake.core.settings import MonitoringSettings

log = logging.getLogger(__name__)


def push_run(job: str, key: Mapping[str, str], *, rows: int, seconds: float,
             partitions: int | None = None, quarantined: int | None = None, failed: bool = False,
             settings: MonitoringSettings | None = None) -> bool:
    """Push one run's figures as `tickerlake_batch_*{job=..., **key}`; True when pushed."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    settings = settings or MonitoringSettings()
    if not settings.pushgateway_url:
        return False
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(f"tickerlake_batch_{name}", doc, registry=registry).set(value)

    gauge("rows", "rows the run wrote", rows)
    gauge("seconds", "the run's duration", seconds)
    gauge("failed", "1 when the run failed", 1 if failed else 0)
    gauge("finished_timestamp_seconds", "when the run ended (Unix time)", time.time())
    if partitions is not None:
        gauge("partitions", "partitions the run wrote", partitions)
    if quarantined is not None:
        gauge("quarantined_rows", "rows the run sent to quarantine", quarantined)
    try:
        push_to_gateway(settings.pushgateway_url, job=job, grouping_key=dict(key), registry=registry,
                        timeout=5)
    except OSError as exc:
        log.warning("metrics not pushed to %s: %s", settings.pushgateway_url, exc)
        return False
    return True
