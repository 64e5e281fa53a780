"""Metrics and alerts on the test stack: real Prometheus, Alertmanager and Pushgateway (Debian's
packages), tickerlake's exporter, a real streaming job, real Airflow; alerts and failure notices
arrive at the session's loopback webhook (tests/conftest.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import ALERT_SYMBOL


def wait_for(check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    return check()


def prom_query(settings, expr: str) -> list[dict]:
    url = f"{settings.monitoring.prometheus_url}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]


def test_the_rendered_configuration_passes_promtool_and_amtool(settings, tmp_path):
    from tickerlake.monitoring.config import Targets, render

    render(tmp_path, settings.monitoring, Targets.local(settings.monitoring))
    for command in (["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                    ["amtool", "check-config", str(tmp_path / "alertmanager.yml")]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    rules = subprocess.run(["promtool", "check", "rules", str(tmp_path / "alert_rules.yml")],
                           capture_output=True, text=True)
    assert "SUCCESS: 6 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_prometheus_scrapes_the_exporter_and_the_pushed_batch_figures(monitoring, settings):
    from tickerlake.core.metrics import push_run

    assert push_run("probe_job", {"interval": "1d"}, rows=1234, seconds=2.5, partitions=3,
                    settings=settings.monitoring)
    up = wait_for(lambda: {r["metric"]["job"] for r in prom_query(settings, "up == 1")} >=
                  {"tickerlake", "pushgateway", "alertmanager", "prometheus"}, timeout=30)
    assert up, prom_query(settings, "up")
    rows = wait_for(lambda: prom_query(settings, 'tickerlake_batch_rows{job="probe_job"}'), timeout=30)
    assert [float(r["value"][1]) for r in rows] == [1234.0]
    assert prom_query(settings, "tickerlake_stream_job_up")  # the exporter's own figures


def test_an_injected_anomaly_alerts_once_and_a_rerun_of_the_interval_none(monitoring, market_data, settings,
                                                                           webhook):
    from tickerlake.monitoring.anomaly_alerts import alert_new_anomalies

    start, end = market_data["start"], market_data["end"]
    sent = alert_new_anomalies(settings, "1d", start, end)
    assert [(a.symbol, a.bar_ts.date()) for a in sent] == [(ALERT_SYMBOL, market_data["last"])]
    assert "return_zscore" in sent[0].kinds
    alerts = wait_for(lambda: webhook.alerts("TickerlakeAnomaly"), timeout=30)
    assert [a["labels"]["symbol"] for a in alerts] == [ALERT_SYMBOL]

    assert alert_new_anomalies(settings, "1d", start, end) == []  # the rerun: nothing new
    time.sleep(5)  # past Alertmanager's group_wait: a second notification would have come
    assert len(webhook.alerts("TickerlakeAnomaly")) == 1


def test_the_exporter_reports_each_tables_snapshot_and_freshness_on_the_calendar(monitoring, market_data,
                                                                                settings):
    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.market import sessions_behind
    from tickerlake.core.names import Table
    from tickerlake.monitoring.exporter import latest_session

    rows = wait_for(lambda: prom_query(settings, 'tickerlake_table_rows{table="processed.bars_1d"} > 0'),
                    timeout=30)
    assert rows, prom_query(settings, "tickerlake_table_rows")
    behind = prom_query(settings, 'tickerlake_dataset_sessions_behind{table="processed.bars_1d"}')
    latest = latest_session(iceberg_catalog(settings), Table.BARS_1D)
    assert latest is not None and latest >= market_data["last"]
    assert behind and float(behind[0]["value"][1]) == sessions_behind(latest) > 0  # old data: late


def test_a_scrape_rereads_a_tables_metadata_only_after_a_commit_changed_it(market_data, settings, spark,
                                                                          monkeypatch):
    """The exporter's scrape cost does not grow with the lake: an unchanged table is not read."""
    from tickerlake.core.names import Table
    from tickerlake.monitoring import exporter

    reads: list[Table] = []
    real = exporter.read_figures
    monkeypatch.setattr(exporter, "read_figures", lambda catalog, table: reads.append(table) or real(catalog, table))
    collector = exporter.LakeCollector(settings)

    def samples() -> dict:
        return {(m.name, tuple(sorted(s.labels.items()))): s.value for m in collector.collect()
                for s in m.samples if m.name.startswith(("tickerlake_table", "tickerlake_dataset"))}

    first = samples()
    assert Table.BARS_1D in reads and first[("tickerlake_table_rows", (("table", "processed.bars_1d"),))] > 0
    reads.clear()
    assert samples() == first and reads == []  # nothing committed in between: nothing read
    name = f"{settings.iceberg.catalog}.{Table.ANOMALIES}"
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('tickerlake.test-touch' = 'x')")  # a commit
    try:
        assert samples() == first and reads == [Table.ANOMALIES]  # only the table whose metadata moved
    finally:
        spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES ('tickerlake.test-touch')")


FAILING_DAG = '''
"""A DAG whose only task fails (the notification test's probe)."""
import pendulum
from airflow.sdk import dag, task

from tickerlake.orchestration.dag_helpers import DEFAULT_ARGS


@dag(dag_id="probe_failing", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"])
def probe_failing():
    @task
    def breaks():
        raise ValueError("this task fails on purpose")

    breaks()


probe_failing()
'''


def test_a_failing_task_sends_one_notification_and_airflows_metrics_reach_prometheus(monitoring, settings,
                                                                                     webhook, tmp_path):
    from tickerlake.dev.airflow_local import run_airflow

    (tmp_path / "probe_failing.py").write_text(textwrap.dedent(FAILING_DAG))
    done = run_airflow(["dags", "test", "probe_failing", "2026-01-02"], settings, capture=True,
                       extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path)})
    assert done.returncode != 0, (done.stdout + done.stderr)[-2000:]  # the run failed
    notices = wait_for(lambda: [b for b in webhook.received if "probe_failing.breaks failed" in str(b)],
                       timeout=20)
    assert len(notices) == 1, webhook.received
    assert "this task fails on purpose" in notices[0]["message"]
    # Airflow's StatsD, through the exporter, scraped by Prometheus
    airflow = wait_for(lambda: prom_query(settings, '{__name__=~"airflow_.+"}'), timeout=30)
    assert airflow, "no airflow_* metric in Prometheus"


@pytest.mark.spark
def test_a_stalled_stream_raises_exactly_one_alert(monitoring, settings, webhook):
    from tickerlake.core.processes import PidFile
    from tickerlake.core.stream_progress import STREAM_JOB, pid_path
    from tickerlake.streaming.supervisor import stop_all, supervise

    supervise(demo_producer=True, settings=settings)
    try:
        pid = PidFile(pid_path(settings, STREAM_JOB)).running_pid()
        assert pid
        progressing = wait_for(lambda: prom_query(settings, "tickerlake_stream_ticks_total > 0"), timeout=240, every=2)
        assert progressing, "the stream never committed a batch"
        assert not webhook.alerts("TickerlakeStreamStalled")
        os.killpg(os.getpgid(pid), signal.SIGSTOP)  # the whole job: driver and JVM stop making progress
        try:
            alerts = wait_for(lambda: webhook.alerts("TickerlakeStreamStalled"), timeout=90, every=2)
            assert len(alerts) == 1, webhook.received
            time.sleep(8)  # more evaluations of a still-firing rule: no second notification
            assert len(webhook.alerts("TickerlakeStreamStalled")) == 1
        finally:
            os.killpg(os.getpgid(pid), signal.SIGCONT)
    finally:
        stop_all(settings)
