"""One-shot, idempotent initialisation of the lake's stores.

`python -m minio_init` creates the buckets (any S3 endpoint: MinIO in compose, the local S3
server here), the Kafka topics with explicit partition counts, and the Postgres warehouse from
the files in `sql/postgres/`. Every step can run again and changes nothing the second time.
"""
