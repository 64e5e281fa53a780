"""Session fixtures: one private stack of real services for the whole test session.

The test stack runs beside any demo stack: its own state directory, free loopback ports, fresh
random secrets, all passed as TICKERLAKE_* environment variables (so subprocesses such as
spark-submit and `airflow dags test` see the same). Services are stopped by PID at the end.
"""
from __future__ import annotations

import logging

import pytest

# py4j logs "closing" at interpreter exit, after pytest has closed the streams it captured.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def stack():
    """The S3 server, Kafka broker and Postgres cluster, up and initialised for the session, with
    their TICKERLAKE_* variables exported (see tickerlake.dev.private)."""
    from tickerlake.dev.private import private_stack

    with private_stack({"TICKERLAKE_SPARK_DRIVER_MEMORY": "1g"}) as started:
        yield started


@pytest.fixture(scope="session")
def settings(stack):
    from tickerlake.core.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def spark(settings):
    """One Spark session (local mode, wired to the test stack) for every Spark test."""
    from tickerlake.core.spark import build_spark_session

    session = build_spark_session("tickerlake-tests", settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3(settings):
    from tickerlake.core.clients import s3_client

    return s3_client(settings.s3)
