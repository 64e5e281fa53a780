"""The embedded local stack: healthy, idempotent, stopped by PID, data kept across restarts."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tickerlake.core.errors import StackError
from tickerlake.core.processes import free_port
from tickerlake.core.settings import REPO_ROOT, load_settings
from tickerlake.dev.services import KafkaBroker, services


def _stack_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tickerlake.dev.stack", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180)


def _everything(stack, monitoring) -> list:
    return [*stack, *monitoring.values()]


def test_status_reports_every_service_healthy(stack, monitoring):
    done = _stack_cli("status")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines] == [[s.name, "healthy"] for s in _everything(stack, monitoring)]


def test_up_twice_is_harmless(stack, monitoring):
    everything = _everything(stack, monitoring)
    pids = {s.name: s.pid_file.running_pid() for s in everything}
    done = _stack_cli("up")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("already running") == len(everything) == 8
    assert {s.name: s.pid_file.running_pid() for s in everything} == pids


def test_every_port_listens_on_loopback_only(stack, monitoring):
    pids = {str(s.pid_file.running_pid()) for s in _everything(stack, monitoring)}
    listening = "".join(subprocess.run(["ss", flags], capture_output=True, text=True).stdout
                        for flags in ("-ltnpH", "-lunpH"))  # TCP listeners and UDP (Airflow's StatsD)
    ours = [ln for ln in listening.splitlines() if any(f"pid={pid}," in ln for pid in pids)]
    assert ours, listening
    local_addresses = {ln.split()[3].rsplit(":", 1)[0] for ln in ours}
    assert local_addresses == {"127.0.0.1"}


def test_a_port_taken_by_someone_else_is_a_clear_error(settings, tmp_path):
    """Not a hang: the check happens before anything is started (no PID file, no data dir)."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", free_port()))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    try:
        other = load_settings(kafka={"bootstrap_servers": f"127.0.0.1:{port}"},
                              stack={"state_dir": tmp_path})
        broker = KafkaBroker(other)
        with pytest.raises(StackError) as info:
            broker.up()
        assert not broker.pid_file.path.exists() and not broker.data_dir.exists()
        assert f"port {port} (TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS)" in str(info.value)
        assert "already in use" in str(info.value)
    finally:
        squatter.close()


def test_data_survives_down_and_up(stack):
    """Write to each service, stop the stack by PID (no process left), start it, read back.

    On a stack of its own: restarting the session's Postgres would cut the connections that
    the session's Spark (Iceberg JDBC catalog) holds."""
    from tickerlake.core.clients import kafka_consumer, kafka_producer, pg_connect, s3_client
    from tickerlake.core.settings import get_settings
    from tickerlake.dev.private import private_stack

    with private_stack() as own:
        settings = get_settings()
        s3 = s3_client(settings.s3)
        s3.put_object(Bucket="raw", Key="survival/probe.txt", Body=b"kept")
        producer = kafka_producer(settings.kafka)
        producer.produce("survival-probe", key=b"k", value=b"kept")
        assert producer.flush(10) == 0, "the probe message was not acknowledged"
        with pg_connect(settings.pg) as conn:
            conn.execute("create table if not exists public.survival_probe (v text)")
            conn.execute("insert into public.survival_probe values ('kept')")

        pids = [s.pid_file.running_pid() for s in own]
        for service in reversed(own):
            assert service.down()
        for pid in pids:
            assert not _alive(pid), f"pid {pid} still running after down"
        for service in own:
            assert service.up() == "started"

        assert s3_client(settings.s3).get_object(Bucket="raw", Key="survival/probe.txt")["Body"].read() == b"kept"
        consumer = kafka_consumer(settings.kafka, "survival-probe", group_id=None, consumer_timeout_ms=5000)
        assert [m.value for m in consumer] == [b"kept"]
        consumer.close()
        with pg_connect(settings.pg) as conn:
            assert conn.execute("select v from public.survival_probe").fetchall() == [("kept",)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_services_know_every_port_they_use(settings):
    """The S3 server's internal ports are laid out from the one S3 port setting."""
    s3, kafka, pg = services(settings)
    base = settings.s3.port
    assert set(s3.ports.values()) == {base, base + 1, base + 2, base + 3, base + 4,
                                      base + 10000, base + 10001, base + 10002, base + 10003,
                                      base + 10004}
    assert list(kafka.ports.values()) == [settings.kafka.port]
    assert list(pg.ports.values()) == [settings.pg.port]
