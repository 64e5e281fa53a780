"""Prometheus's and Alertmanager's configuration, rendered from the settings: one place for the
scrape targets, the alert rules and the receiver.

`python -m tickerlake.monitoring.config OUT_DIR` writes prometheus.yml, alert_rules.yml and
alertmanager.yml. The local stack renders them into its state directory; compose renders them
into a volume with `--compose`, which names the compose services instead of 127.0.0.1.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tickerlake.core.errors import one_line_errors
from tickerlake.core.settings import MonitoringSettings, get_settings

LOOPBACK = "127.0.0.1"
ANOMALY_ALERT = "TickerlakeAnomaly"  # sent by tickerlake/monitoring/anomaly_alerts.py, not a rule


@dataclass(frozen=True)
class Targets:
    """host:port of each scraped service."""

    exporter: str
    pushgateway: str
    alertmanager: str
    prometheus: str
    # prom/statsd-exporter in compose; locally the exporter itself receives Airflow's StatsD
    statsd_exporter: str | None = None

    @classmethod
    def local(cls, m: MonitoringSettings) -> Targets:
        return cls(f"{LOOPBACK}:{m.exporter_port}", f"{LOOPBACK}:{m.pushgateway_port}",
                   f"{LOOPBACK}:{m.alertmanager_port}", f"{LOOPBACK}:{m.prometheus_port}")

    @classmethod
    def compose(cls) -> Targets:
        return cls("tickerlake-exporter:9108", "pushgateway:9091", "alertmanager:9093", "prometheus:9090",
                   "statsd-exporter:9102")


def rules(m: MonitoringSettings) -> dict[str, Any]:
    """The alert rules. Each names what is wrong in its summary; `for` keeps a blip silent."""
    held = f"{m.alert_for_seconds}s"
    return {"groups": [{"name": "tickerlake", "rules": [
        {"alert": "TickerlakeStreamStalled",
         # the job runs and records wait, but it has reported no micro-batch for stall_seconds
         "expr": (f"(time() - tickerlake_stream_last_progress_timestamp_seconds > {m.stall_seconds})"
                  " and on() (sum(tickerlake_stream_lag_records) > 0)"
                  " and on() (tickerlake_stream_job_up == 1)"),
         "for": held, "labels": {"severity": "critical"},
         "annotations": {"summary": f"the stream job committed nothing for over {m.stall_seconds}s "
                                    "while records wait in the topic"}},
        {"alert": "TickerlakeStreamLagGrowing",
         "expr": ("sum(tickerlake_stream_lag_records) > 10000"
                  " and deriv(sum(tickerlake_stream_lag_records)[5m:30s]) > 0"),
         "for": "5m", "labels": {"severity": "warning"},
         "annotations": {"summary": "the stream falls behind the topic: {{ $value }} records waiting"}},
        {"alert": "TickerlakeFreshnessMissed",
         # the daily backfill and transform run after the close: 6 hours is their target
         "expr": "tickerlake_dataset_sessions_behind > 0",
         "for": "6h", "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.table }} is {{ $value }} closed session(s) behind"}},
        {"alert": "TickerlakeQuarantineSpike",
         "expr": ("(increase(tickerlake_stream_malformed_total[10m])"
                  " + increase(tickerlake_stream_late_total[10m]) > 100)"
                  " or (tickerlake_batch_quarantined_rows / clamp_min(tickerlake_batch_rows, 1) > 0.01)"),
         "for": "0s", "labels": {"severity": "warning"},
         "annotations": {"summary": "many records quarantined ({{ $labels.job }}): see the quarantine's reasons"}},
        {"alert": "TickerlakeBatchFailed",
         "expr": "tickerlake_batch_failed == 1",
         "for": "0s", "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.job }} failed ({{ $labels.dataset }}{{ $labels.interval }})"}},
        {"alert": "TickerlakeTargetDown",
         "expr": "up == 0", "for": "1m", "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.job }} at {{ $labels.instance }} does not answer"}},
    ]}]}


def prometheus(m: MonitoringSettings, targets: Targets) -> dict[str, Any]:
    interval = f"{m.scrape_seconds}s"
    airflow = ([{"job_name": "airflow", "static_configs": [{"targets": [targets.statsd_exporter]}]}]
               if targets.statsd_exporter else [])
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["alert_rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [targets.alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": "tickerlake", "static_configs": [{"targets": [targets.exporter]}]},
            # the batch runs' own `job` label is kept
            {"job_name": "pushgateway", "honor_labels": True,
             "static_configs": [{"targets": [targets.pushgateway]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [targets.alertmanager]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [targets.prometheus]}]},
            *airflow,
        ],
    }


def alertmanager(m: MonitoringSettings) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": "default"}
    url = m.webhook_url.get_secret_value()
    if url:
        receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
    return {
        "route": {"receiver": "default",
                  # one notification per alert: an anomaly is its own group (symbol and bar)
                  "group_by": ["alertname", "table", "job", "symbol", "interval", "bar"],
                  "group_wait": "2s", "group_interval": "1m", "repeat_interval": "12h"},
        "receivers": [receiver],
    }


def render(out: Path, m: MonitoringSettings, targets: Targets) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"prometheus.yml": prometheus(m, targets), "alert_rules.yml": rules(m),
             "alertmanager.yml": alertmanager(m)}
    written = []
    for name, body in files.items():
        path = out / name
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        if name == "alertmanager.yml":
            path.chmod(0o600)  # holds the webhook URL, a secret
        written.append(path)
    return written


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.monitoring.config",
                                     description="render Prometheus's and Alertmanager's configuration")
    parser.add_argument("out", type=Path)
    parser.add_argument("--compose", action="store_true", help="target the compose services by name")
    args = parser.parse_args(argv)
    m = get_settings().monitoring
    for path in render(args.out, m, Targets.compose() if args.compose else Targets.local(m)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
