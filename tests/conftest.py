"""Session fixtures: one private stack of real services for the whole test session.

The test stack runs beside any demo stack: its own state directory, free loopback ports, fresh
random secrets, all passed as TICKERLAKE_* environment variables (so subprocesses such as
spark-submit and `airflow dags test` see the same). Services are stopped by PID at the end.
"""
from __future__ import annotations

import logging

import pytest

# py4j logs "closing" at interpreter exit, after pytest has closed the streams it captured.
logging.getLogger("py4j").setLevel(logging.WARNING)


class Webhook:
    """A loopback HTTP receiver (Alertmanager's webhook, Apprise's json:// notices): every POST
    body it received, parsed."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    received.append(json.loads(body))
                except ValueError:
                    received.append({"raw": body.decode(errors="replace")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, alertname: str, status: str = "firing") -> list[dict]:
        """Alertmanager notifications' alerts with this name and status."""
        return [a for body in self.received for a in body.get("alerts", [])
                if a.get("labels", {}).get("alertname") == alertname and a.get("status") == status]


@pytest.fixture(scope="session")
def webhook():
    receiver = Webhook()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def stack(webhook):
    """The S3 server, Kafka broker and Postgres cluster, up and initialised for the session, with
    their TICKERLAKE_* variables exported (see tickerlake.dev.private). Alerts and failure notices
    go to the session's loopback webhook; the alert rules' thresholds are short."""
    from tickerlake.dev.private import private_stack

    with private_stack({"TICKERLAKE_SPARK_DRIVER_MEMORY": "1g",
                        "TICKERLAKE_MONITORING_WEBHOOK_URL": webhook.url,
                        "TICKERLAKE_MONITORING_STALL_SECONDS": "15",
                        "TICKERLAKE_MONITORING_ALERT_FOR_SECONDS": "3",
                        "TICKERLAKE_MONITORING_SCRAPE_SECONDS": "1",
                        # a killed job's lease frees sooner (production: 30 s)
                        "TICKERLAKE_STREAM_LEASE_SECONDS": "8"}) as started:
        from tickerlake.core.settings import get_settings
        from tickerlake.dev.airflow_warm import warm_airflow

        # the suite's `airflow dags test` runs fork from one process that imported Airflow once
        # (7 s a run instead of 21; tickerlake/dev/airflow_warm.py)
        with warm_airflow(get_settings()):
            yield started


@pytest.fixture(scope="session")
def monitoring(stack, settings):
    """Pushgateway, Alertmanager, Prometheus, the exporter and the dashboard for the session."""
    from tickerlake.dev.services import monitoring_services

    started = []
    try:
        for service in monitoring_services(settings):
            started.append(service)
            service.up()
        yield {service.name: service for service in started}
    finally:
        for service in reversed(started):
            service.down()


@pytest.fixture(scope="session")
def settings(stack):
    from tickerlake.core.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def spark(settings):
    """One Spark session (local mode, wired to the test stack) for every Spark test."""
    from tickerlake.core.spark import build_spark_session

    session = build_spark_session("tickerlake-tests", settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3(settings):
    from tickerlake.core.clients import s3_client

    return s3_client(settings.s3)


# A symbol and sessions no other test writes: the dashboard's and the alerts' market data.
ALERT_SYMBOL = "ALRT"
ALERT_RANGE = ("2022-03-01", "2022-06-01")


@pytest.fixture(scope="session")
def market_data(stack, settings, spark, s3):
    """Daily bars of ALERT_SYMBOL with a price jump on its last session (an anomaly on the latest
    bar) and one bad row of each kind (quarantined with reasons): backfilled, transformed by
    Spark, loaded into the warehouse."""
    import argparse
    from datetime import date

    from ingestion.backfill import backfill
    from ingestion.sources.synthetic import Anomaly, SyntheticMarket, sessions
    from minio_init.warehouse import ensure_databases
    from spark_jobs import transform_bars
    from tickerlake.warehouse.pipeline import load

    start, end = (date.fromisoformat(d) for d in ALERT_RANGE)
    last = sessions(start, end)[-1].date()
    market = SyntheticMarket(seed=23, anomalies=[Anomaly(ALERT_SYMBOL, last, jump=0.2, volume_factor=15)])
    backfill(market, [ALERT_SYMBOL], start, end, "1d", s3,
             extra_rows=market.bad_rows(ALERT_SYMBOL, sessions(start, end)[5].date(), "1d"))
    args = argparse.Namespace(start=start, end=end, interval="1d", source="synthetic",
                              lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS)
    summary = transform_bars.run(spark, args)
    ensure_databases(settings.pg)
    load(settings, ["bars_daily", "anomalies"])
    return {"start": start, "end": end, "last": last, "summary": summary}


def pytest_collection_modifyitems(config, items):
    """Tests marked `after_all` (the secret scan of every log) run last, whatever their file."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)
