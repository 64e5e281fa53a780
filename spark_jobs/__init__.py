"""Spark jobs. Each is runnable with spark-submit or `python -m`, and never imports Airflow."""
