"""Airflow's StatsD metrics as Prometheus metrics.

Airflow emits StatsD (`[metrics] statsd_on`); Prometheus scrapes. The reference bridge,
prom/statsd-exporter, runs in compose; no package of it reaches these machines, so the local
stack's exporter listens for StatsD itself. It understands what Airflow sends: counters (`|c`,
with sample rates), gauges (`|g`, with +/- deltas) and timers (`|ms`, kept as a count and a sum).
Names keep their dots turned into underscores (`airflow.dagrun.duration.success.lake_smoke` ->
`airflow_dagrun_duration_success_lake_smoke`).
"""
from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(name: str) -> str:
    cleaned = _INVALID.sub("_", name)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


class StatsdCollector(Collector):
    """Receives StatsD lines on a UDP port; a Prometheus collector of what it received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.timers: dict[str, tuple[int, float]] = {}

    def receive(self, packet: str) -> None:
        for line in packet.splitlines():
            self._line(line.strip())

    def _line(self, line: str) -> None:
        # name:value|type[|@rate][|#tags]
        name, _, rest = line.partition(":")
        fields = rest.split("|")
        if not name or len(fields) < 2:
            return
        value_text, kind = fields[0], fields[1]
        rate = next((float(f[1:]) for f in fields[2:] if f.startswith("@")), 1.0) or 1.0
        try:
            value = float(value_text)
        except ValueError:
            return
        key = metric_name(name)
        with self._lock:
            if kind == "c":
                self.counters[key] = self.counters.get(key, 0.0) + value / rate
            elif kind == "g":
                delta = value_text[:1] in "+-"
                self.gauges[key] = self.gauges.get(key, 0.0) + value if delta else value
            elif kind in ("ms", "h", "d"):
                count, total = self.timers.get(key, (0, 0.0))
                self.timers[key] = (count + 1, total + value / 1000.0)

    def collect(self) -> Iterator:
        with self._lock:
            counters, gauges, timers = dict(self.counters), dict(self.gauges), dict(self.timers)
        for name, value in counters.items():
            yield CounterMetricFamily(name, "from StatsD (Airflow)", value=value)
        for name, value in gauges.items():
            yield GaugeMetricFamily(name, "from StatsD (Airflow)", value=value)
        for name, (count, total) in timers.items():
            yield SummaryMetricFamily(f"{name}_seconds", "from StatsD (Airflow), seconds",
                                      count_value=count, sum_value=total)

    def serve(self, host: str, port: int) -> threading.Thread:
        """Listen on UDP host:port in a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))

        def loop() -> None:
            while True:
                data, _ = sock.recvfrom(65535)
                self.receive(data.decode("utf-8", errors="replace"))

        thread = threading.Thread(target=loop, name="statsd", daemon=True)
        thread.start()
        return thread
