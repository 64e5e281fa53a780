"""The Airflow glue: helpers DAG files wire together, and the lake's datasets as Airflow Assets."""
