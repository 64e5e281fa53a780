"""The monitoring lane: tickerlake's Prometheus exporter, Airflow's StatsD metrics, the rendered
Prometheus/Alertmanager configuration and the anomaly alerts (docs/operations.md)."""
