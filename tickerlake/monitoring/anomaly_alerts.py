"""One alert per anomalous latest bar, never repeated.

After a transform, the latest bar of each symbol in the run's interval is looked up in
`processed.anomalies`; each (symbol, interval, bar) found is recorded in a small ledger table in
Postgres (`tickerlake_ops.anomaly_alerts`, the database that also holds the Iceberg catalog, so
it exists whichever warehouse is configured) and posted to Alertmanager. The ledger insert and
the post share one transaction: a failed post rolls the insert back (the next run retries), and
a rerun of the same interval finds its bars already recorded and sends nothing.
"""
from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tickerlake.core.names import Table
from tickerlake.core.settings import Settings
from tickerlake.monitoring.config import ANOMALY_ALERT

log = logging.getLogger(__name__)

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS tickerlake_ops;
CREATE TABLE IF NOT EXISTS tickerlake_ops.anomaly_alerts (
    symbol    text        NOT NULL,
    interval  text        NOT NULL,
    bar_ts    timestamptz NOT NULL,
    kinds     text        NOT NULL,
    sent_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, bar_ts)
)"""


@dataclass(frozen=True)
class BarAnomaly:
    symbol: str
    interval: str
    bar_ts: datetime
    kinds: tuple[str, ...]
    close: float | None
    return_zscore: float | None
    volume_ratio: float | None


def latest_bar_anomalies(settings: Settings, interval: str, start: date, end: date) -> list[BarAnomaly]:
    """Anomalies on each symbol's latest bar in [start, end) (dates of the session partitions)."""
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    from tickerlake.core.iceberg import iceberg_catalog

    catalog = iceberg_catalog(settings)
    window = And(GreaterThanOrEqual("date", start.isoformat()), LessThan("date", end.isoformat()))  # type: ignore[call-arg,arg-type]
    bars = catalog.load_table(Table.bars(interval).value).scan(
        row_filter=window, selected_fields=("symbol", "timestamp")).to_arrow()
    if bars.num_rows == 0:
        return []
    latest = bars.group_by("symbol").aggregate([("timestamp", "max")]).to_pylist()
    newest = {row["symbol"]: row["timestamp_max"] for row in latest}
    found = catalog.load_table(Table.ANOMALIES.value).scan(
        row_filter=And(EqualTo("interval", interval), window)).to_arrow().to_pylist()  # type: ignore[call-arg,arg-type]
    by_bar: dict[tuple[str, datetime], list[dict]] = {}
    for row in found:
        if newest.get(row["symbol"]) == row["timestamp"]:
            by_bar.setdefault((row["symbol"], row["timestamp"]), []).append(row)
    return [BarAnomaly(symbol, interval, ts, tuple(sorted(r["kind"] for r in rows)), rows[0]["close"],
                       rows[0]["return_zscore"], rows[0]["volume_ratio"])
            for (symbol, ts), rows in sorted(by_bar.items())]


def _alert(a: BarAnomaly) -> dict:
    now = datetime.now(UTC)
    bar = a.bar_ts.astimezone(UTC).isoformat()
    return {
        "labels": {"alertname": ANOMALY_ALERT, "severity": "info", "symbol": a.symbol,
                   "interval": a.interval, "bar": bar},
        "annotations": {"summary": f"{a.symbol} {a.interval} bar {bar}: {', '.join(a.kinds)}",
                        "close": f"{a.close}", "return_zscore": f"{a.return_zscore}",
                        "volume_ratio": f"{a.volume_ratio}"},
        "startsAt": now.isoformat(),
        # an anomaly is an event, not a condition: it resolves itself after a day
        "endsAt": (now + timedelta(days=1)).isoformat(),
    }


class AlertmanagerUnreachable(RuntimeError):
    pass


def post_alerts(alertmanager_url: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(f"{alertmanager_url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except OSError as exc:  # URLError, refused, timeout: the ledger insert is rolled back
        raise AlertmanagerUnreachable(f"Alertmanager at {alertmanager_url} (TICKERLAKE_MONITORING_ALERTMANAGER_URL) "
                                      f"did not take the alerts: {exc}; they are sent on the task's retry") from None
    if status != 200:
        raise AlertmanagerUnreachable(f"Alertmanager at {alertmanager_url} answered {status}")


def alert_new_anomalies(settings: Settings, interval: str, start: date, end: date) -> list[BarAnomaly]:
    """Send an alert for each anomalous latest bar not alerted before; returns those sent."""
    from tickerlake.core.clients import pg_connect

    candidates = latest_bar_anomalies(settings, interval, start, end)
    if not candidates:
        return []
    with pg_connect(settings.pg) as conn:  # one transaction: commit only after the post
        conn.execute(LEDGER_DDL)
        fresh = []
        for a in candidates:
            inserted = conn.execute(
                "INSERT INTO tickerlake_ops.anomaly_alerts (symbol, interval, bar_ts, kinds) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING symbol",
                (a.symbol, a.interval, a.bar_ts, ",".join(a.kinds))).fetchone()
            if inserted:
                fresh.append(a)
        if fresh:
            post_alerts(settings.monitoring.alertmanager_url, [_alert(a) for a in fresh])
        conn.commit()
    log.info("anomaly alerts: %d new of %d on latest bars", len(fresh), len(candidates))
    return fresh
