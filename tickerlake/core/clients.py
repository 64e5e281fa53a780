"""Clients for the lake's services, built from the settings.

Every client is store-neutral: S3 goes through ``endpoint_url`` with path-style addressing (MinIO,
SeaweedFS and AWS alike), Kafka through plain bootstrap servers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tickerlake.core.settings import KafkaSettings, PostgresSettings, S3Settings

if TYPE_CHECKING:
    import psycopg
    from confluent_kafka import Producer
    from kafka import KafkaAdminClient, KafkaConsumer
    from mypy_boto3_s3 import S3Client


def s3_client(s3: S3Settings) -> "S3Client":
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key.get_secret_value(),
        region_name=s3.region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def kafka_admin(kafka: KafkaSettings) -> "KafkaAdminClient":
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="tickerlake-admin",
                            request_timeout_ms=10_000)


def kafka_producer(kafka: KafkaSettings, overrides: dict[str, Any] | None = None) -> "Producer":
    """An idempotent producer (acks=all: a retried send is never written twice), librdkafka's
    through confluent-kafka: every tick goes through it, and kafka-python's pure-Python producer
    cost 8x the CPU per event (docs/streaming.md). `overrides` are librdkafka settings."""
    from confluent_kafka import Producer

    options: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": "tickerlake-producer",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    }
    return Producer({**options, **(overrides or {})})


def kafka_consumer(kafka: KafkaSettings, *topics: str, group_id: str | None,
                   **overrides: Any) -> "KafkaConsumer":
    """A consumer that commits only when told to: offsets follow durable writes, not reads."""
    from kafka import KafkaConsumer

    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    return KafkaConsumer(*topics, **{**options, **overrides})


def pg_connect(pg: PostgresSettings, *, as_analyst: bool = False, dbname: str | None = None,
               autocommit: bool = False) -> "psycopg.Connection":
    import psycopg

    dsn = pg.dsn(as_analyst=as_analyst)
    if dbname is not None:
        dsn = dsn.replace(f"dbname={pg.database}", f"dbname={dbname}")
    return psycopg.connect(dsn, autocommit=autocommit)


def arrow_s3_filesystem(s3: S3Settings):
    """pyarrow's S3 filesystem on the same endpoint (path-style, as every client here)."""
    from pyarrow import fs

    scheme, _, host = s3.endpoint_url.partition("://")
    return fs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key.get_secret_value(),
        endpoint_override=host,
        scheme=scheme,
        region=s3.region,
        force_virtual_addressing=False,
    )
