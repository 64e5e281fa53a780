"""The local developer stack: local services (S3 server, Kafka broker, Postgres), the Airflow
wrappers, the demo, the `.env` writer, jar provisioning and the private test stack. No
production path imports it (an import-linter contract in pyproject.toml)."""
