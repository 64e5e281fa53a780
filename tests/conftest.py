"""Session fixtures: one private stack of real services for the whole test session.

The test stack runs beside any demo stack: its own state directory, free loopback ports, fresh
random secrets, all passed as TICKERLAKE_* environment variables (so subprocesses such as
spark-submit and `airflow dags test` see the same). Services are stopped by PID at the end.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from tickerlake.stack.process import port_in_use

LOOPBACK = "127.0.0.1"
# py4j logs "closing" at interpreter exit, after pytest has closed the streams it captured.
logging.getLogger("py4j").setLevel(logging.WARNING)


def _free_s3_base() -> int:
    """An S3 port P with P..P+4 and their gRPC twins (+10000) all free (see S3Server.ports)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 10)
        ports = [base + i for i in range(5)] + [base + 10000 + i for i in range(5)]
        if not any(port_in_use(LOOPBACK, p) for p in ports):
            return base
    raise RuntimeError("no free port range for the test S3 server")


def _free_port() -> int:
    from tickerlake.stack.process import free_port

    return free_port(LOOPBACK)


@pytest.fixture(scope="session")
def test_env() -> dict[str, str]:
    """TICKERLAKE_* variables of the test stack, exported into this process's environment."""
    state = Path(tempfile.mkdtemp(prefix="tickerlake-test-"))
    state.chmod(0o755)  # the Postgres server runs as the `postgres` user and must reach its dir
    s3_port = _free_s3_base()
    env = {
        "TICKERLAKE_S3_ENDPOINT_URL": f"http://{LOOPBACK}:{s3_port}",
        "TICKERLAKE_S3_CONSOLE_URL": f"http://{LOOPBACK}:{s3_port + 4}",
        "TICKERLAKE_S3_ACCESS_KEY_ID": "tickerlake-test",
        "TICKERLAKE_S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        "TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS": f"{LOOPBACK}:{_free_port()}",
        "TICKERLAKE_KAFKA_TICKS_PARTITIONS": "3",
        "TICKERLAKE_PG_PORT": str(_free_port()),
        "TICKERLAKE_PG_PASSWORD": secrets.token_urlsafe(24),
        "TICKERLAKE_PG_ANALYST_PASSWORD": secrets.token_urlsafe(24),
        "TICKERLAKE_SPARK_MASTER": "local[2]",
        "TICKERLAKE_SPARK_DRIVER_MEMORY": "1g",
        "TICKERLAKE_SPARK_SHUFFLE_PARTITIONS": "2",
        "TICKERLAKE_SPARK_UI_ENABLED": "false",
        "TICKERLAKE_STACK_STATE_DIR": str(state),
        "GX_ANALYTICS_ENABLED": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from tickerlake.settings import get_settings

    get_settings.cache_clear()
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(test_env):
    from tickerlake.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def stack(settings):
    """The S3 server, Kafka broker and Postgres cluster, up and initialised for the session."""
    from minio_init.buckets import ensure_buckets
    from minio_init.topics import ensure_topics
    from minio_init.warehouse import apply_sql, ensure_databases
    from tickerlake.stack.services import services

    started = []
    try:
        for service in services(settings):
            service.up()
            started.append(service)
        ensure_buckets(settings.s3)
        ensure_topics(settings.kafka)
        ensure_databases(settings.pg)
        apply_sql(settings.pg)
        yield started
    finally:
        for service in reversed(started):
            service.down()


@pytest.fixture(scope="session")
def spark(stack, settings):
    """One Spark session (local mode, wired to the test stack) for every Spark test."""
    from tickerlake.spark import build_spark_session

    session = build_spark_session("tickerlake-tests", settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3(stack, settings):
    from tickerlake.clients import s3_client

    return s3_client(settings.s3)
