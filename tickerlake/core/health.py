"""Read-only health checks of the lake's services, for whatever store is configured.

Each check sends one real request and changes nothing: no bucket, object, topic or row is created
on the configured store (a production MinIO included).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tickerlake.core.names import Bucket
from tickerlake.core.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    address: str
    probe: Callable[[], None]  # raises when the service does not answer as it should


def s3_answers(settings: Settings) -> None:
    """A signed request per lake bucket (HEAD): the credentials work and the buckets exist."""
    from tickerlake.core.clients import s3_client

    client = s3_client(settings.s3)
    for bucket in Bucket:
        client.head_bucket(Bucket=bucket.value)


def kafka_answers(settings: Settings) -> None:
    """A metadata round trip."""
    from tickerlake.core.clients import kafka_admin

    admin = kafka_admin(settings.kafka)
    try:
        admin.list_topics()
    finally:
        admin.close()


def postgres_answers(settings: Settings, dbname: str | None = None) -> None:
    """A password login and `select 1`."""
    from tickerlake.core.clients import pg_connect

    with pg_connect(settings.pg, dbname=dbname) as conn:
        conn.execute("select 1")


def checks(settings: Settings) -> list[Check]:
    return [Check("s3", settings.s3.endpoint_url, lambda: s3_answers(settings)),
            Check("kafka", settings.kafka.bootstrap_servers, lambda: kafka_answers(settings)),
            Check("postgres", f"{settings.pg.host}:{settings.pg.port}", lambda: postgres_answers(settings))]
