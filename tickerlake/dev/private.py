"""A throwaway stack for tests and benchmarks: free loopback ports, fresh secrets, a temporary
state directory, exported as TICKERLAKE_* variables (so subprocesses such as spark-submit and
`airflow dags test` see it too), initialised, and stopped by PID on exit."""
from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tickerlake.core.errors import StackError
from tickerlake.core.processes import free_port, port_in_use

LOOPBACK = "127.0.0.1"


def _free_s3_base() -> int:
    """An S3 port P with P..P+4 and their gRPC twins (+10000) all free (see S3Server.ports)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 10)
        ports = [base + i for i in range(5)] + [base + 10000 + i for i in range(5)]
        if not any(port_in_use(LOOPBACK, p) for p in ports):
            return base
    raise RuntimeError("no free port range for a private S3 server")


def private_env(state: Path) -> dict[str, str]:
    s3_port = _free_s3_base()
    return {
        "TICKERLAKE_S3_ENDPOINT_URL": f"http://{LOOPBACK}:{s3_port}",
        "TICKERLAKE_S3_CONSOLE_URL": f"http://{LOOPBACK}:{s3_port + 4}",
        "TICKERLAKE_S3_ACCESS_KEY_ID": "tickerlake-private",
        "TICKERLAKE_S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        "TICKERLAKE_S3_CONSOLE_PASSWORD": secrets.token_urlsafe(24),
        "TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS": f"{LOOPBACK}:{free_port(LOOPBACK)}",
        "TICKERLAKE_KAFKA_TICKS_PARTITIONS": "3",
        "TICKERLAKE_PG_PORT": str(free_port(LOOPBACK)),
        "TICKERLAKE_PG_PASSWORD": secrets.token_urlsafe(24),
        "TICKERLAKE_PG_ANALYST_PASSWORD": secrets.token_urlsafe(24),
        "TICKERLAKE_PG_LOADER_PASSWORD": secrets.token_urlsafe(24),
        "TICKERLAKE_SPARK_MASTER": "local[2]",
        "TICKERLAKE_SPARK_SHUFFLE_PARTITIONS": "2",
        "TICKERLAKE_SPARK_UI_ENABLED": "false",
        "TICKERLAKE_STACK_STATE_DIR": str(state),
        "TICKERLAKE_MONITORING_PROMETHEUS_URL": f"http://{LOOPBACK}:{free_port(LOOPBACK)}",
        "TICKERLAKE_MONITORING_ALERTMANAGER_URL": f"http://{LOOPBACK}:{free_port(LOOPBACK)}",
        "TICKERLAKE_MONITORING_PUSHGATEWAY_URL": f"http://{LOOPBACK}:{free_port(LOOPBACK)}",
        "TICKERLAKE_MONITORING_EXPORTER_PORT": str(free_port(LOOPBACK)),
        "TICKERLAKE_MONITORING_STATSD_PORT": str(free_port(LOOPBACK)),
        "TICKERLAKE_MONITORING_DASHBOARD_PORT": str(free_port(LOOPBACK)),
        "GX_ANALYTICS_ENABLED": "false",
    }


@contextlib.contextmanager
def exported(env: dict[str, str]) -> Iterator[None]:
    """Set `env` in os.environ (and re-read the settings) for the duration."""
    from tickerlake.core.settings import get_settings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@contextlib.contextmanager
def private_stack(extra_env: dict[str, str] | None = None) -> Iterator[list]:
    """Start, initialise, yield the services; stop them by PID and delete the state on exit."""
    from tickerlake.core.settings import REPO_ROOT, get_settings
    from tickerlake.dev.services import services

    state = Path(tempfile.mkdtemp(prefix="tickerlake-private-"))
    state.chmod(0o755)  # the Postgres server runs as the `postgres` user and must reach its dir
    started = []
    try:
        with exported({**private_env(state), **(extra_env or {})}):
            settings = get_settings()
            try:
                for service in services(settings):
                    started.append(service)  # before up(): a start that fails half-way is stopped too
                    service.up()
                # The product's own one-shot init, as a user runs it (and no import of it here:
                # minio_init imports the package, not the other way round).
                done = subprocess.run([sys.executable, "-m", "minio_init"], cwd=REPO_ROOT,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise StackError(f"python -m minio_init failed: {done.stderr.strip()[-500:]}")
                yield started
            finally:
                for service in reversed(started):
                    service.down()
    finally:
        shutil.rmtree(state, ignore_errors=True)
