"""The embedded local stack: an S3 server, a Kafka-protocol broker and a Postgres cluster.

Each service runs on 127.0.0.1 with its data, log and PID file under the state directory.
`up` starts what is not running and waits until each service's API answers; `down` stops by PID.
Ports come from the settings, so a test session can run a second stack beside the demo one.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from tickerlake.core.errors import StackError
from tickerlake.core.names import Bucket
from tickerlake.core.processes import PidFile, port_in_use, spawn, stop, wait_until
from tickerlake.core.settings import Settings
from tickerlake.dev.secret_files import write_secret_file

LOOPBACK = "127.0.0.1"


def _venv_bin(name: str) -> str:
    """A console script installed next to this interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise StackError(f"`{name}` is not installed; run `make setup`")
    return found


@dataclass(frozen=True)
class Health:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    detail: str = ""


class Service(ABC):
    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = settings.stack.state_dir
        self.pid_file = PidFile(self.state / "pids" / f"{self.name}.pid")
        self.log_path = self.state / "logs" / f"{self.name}.log"
        self.data_dir = self.state / "data" / self.name

    @property
    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Every port the service listens on, by the setting that decides it."""

    @property
    @abstractmethod
    def address(self) -> str: ...

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def is_healthy(self) -> bool:
        """True when the service's API answers a real request (not just an open port)."""

    start_timeout = 60.0
    stop_signal = signal.SIGTERM
    run_as: str | None = None

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def up(self) -> str:
        if self.pid_file.running_pid() is not None:
            wait_until(self.is_healthy, what=self.name, timeout=self.start_timeout,
                       pid_file=self.pid_file, log_path=self.log_path)
            return "already running"
        taken = {setting: port for setting, port in self.ports.items() if port_in_use(LOOPBACK, port)}
        if taken:
            listing = ", ".join(f"{port} ({setting})" for setting, port in taken.items())
            raise StackError(
                f"{self.name}: port {listing} on {LOOPBACK} is already in use by a process this "
                "stack did not start; stop it or choose another port in the setting named"
            )
        self._prepare()
        spawn(self._command(), self.log_path, self.pid_file, cwd=self.data_dir, user=self.run_as,
              env=self._env())
        wait_until(self.is_healthy, what=self.name, timeout=self.start_timeout,
                   pid_file=self.pid_file, log_path=self.log_path)
        return "started"

    def _env(self) -> dict[str, str]:
        return {}

    def down(self) -> bool:
        return stop(self.pid_file, sig=self.stop_signal)

    def health(self) -> Health:
        pid = self.pid_file.running_pid()
        healthy = False
        detail = ""
        if pid is not None:
            try:
                healthy = self.is_healthy()
            except Exception as exc:  # noqa: BLE001 - status reports, it does not raise
                detail = f"{type(exc).__name__}: {exc}"[:200]
        return Health(self.name, pid is not None, healthy, pid, self.address, detail)


class S3Server(Service):
    """SeaweedFS `weed mini`: the S3 API on the endpoint's port, its console next to it."""

    name = "s3"
    start_timeout = 60.0

    @property
    def ports(self) -> dict[str, int]:
        # weed mini runs master, volume, filer, S3 and admin servers, each with a gRPC port at
        # +10000. They are laid out after the S3 port so that a second stack needs one setting.
        base = self.settings.s3.port
        http = {"TICKERLAKE_S3_ENDPOINT_URL": base, "master (S3 port+1)": base + 1,
                "volume (S3 port+2)": base + 2, "filer (S3 port+3)": base + 3,
                "TICKERLAKE_S3_CONSOLE_URL": self.console_port}
        grpc = {f"{name} gRPC (+10000)": port + 10000 for name, port in http.items()}
        return {**http, **grpc}

    @property
    def console_port(self) -> int:
        return int(self.settings.s3.console_url.rsplit(":", 1)[1].split("/")[0])

    @property
    def address(self) -> str:
        return self.settings.s3.endpoint_url

    def _prepare(self) -> None:
        super()._prepare()
        s3 = self.settings.s3
        identities = {"identities": [{
            "name": "tickerlake",
            "credentials": [{"accessKey": s3.access_key_id,
                             "secretKey": s3.secret_access_key.get_secret_value()}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        write_secret_file(self.state / "s3.json", json.dumps(identities), replace=True)

    def _command(self) -> list[str]:
        base = self.settings.s3.port
        return [
            _venv_bin("weed"), "mini", f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}", "-master.telemetry=false",
            f"-s3.config={self.state / 's3.json'}", f"-s3.port={base}",
            f"-master.port={base + 1}", f"-volume.port={base + 2}", f"-filer.port={base + 3}",
            f"-admin.port={self.console_port}",
            "-webdav=false", "-s3.port.lance=0", "-s3.port.iceberg=0",
            f"-bucket={','.join(b.value for b in Bucket)}",
        ]

    def _env(self) -> dict[str, str]:
        s3 = self.settings.s3
        # The console's login through the environment (weed reads WEED_ADMIN_*): a -admin.password
        # flag would show in `ps` to every user of the machine.
        return {"GOMEMLIMIT": "512MiB", "WEED_ADMIN_USER": s3.console_user,
                "WEED_ADMIN_PASSWORD": s3.console_password.get_secret_value()}

    def is_healthy(self) -> bool:
        """Read-only: a signed ListBuckets, the volume server's own status page, and the master's
        topology listing that volume server. After a restart the S3 gateway answers listings
        before its volume server serves data, and the volume server answers before its first
        heartbeat has told the master which volumes it holds: until then a GetObject fails with
        InternalError (seen once in six restarts). `up` must mean that reads and writes work."""
        import urllib.request

        from tickerlake.core.clients import s3_client

        s3_client(self.settings.s3).list_buckets()
        volume = f"{LOOPBACK}:{self.settings.s3.port + 2}"
        with urllib.request.urlopen(f"http://{volume}/healthz", timeout=2) as response:
            if response.status != 200:
                return False
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.settings.s3.port + 1}/dir/status", timeout=2) as response:
            topology = json.load(response).get("Topology") or {}
        return any(node.get("Url") == volume for dc in topology.get("DataCenters") or []
                   for rack in dc.get("Racks") or [] for node in rack.get("DataNodes") or [])


class KafkaBroker(Service):
    """noida-db's Kafka-protocol broker (Apache Kafka in compose)."""

    name = "kafka"
    start_timeout = 30.0

    @property
    def ports(self) -> dict[str, int]:
        return {"TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka.port}

    @property
    def address(self) -> str:
        return self.settings.kafka.bootstrap_servers

    @staticmethod
    def binary() -> str:
        # The `noida-db` console script is a Python wrapper that spawns this binary as a child and
        # does not pass signals on: run the binary itself so that our PID is the broker's.
        try:
            import noida_db
        except ImportError:
            raise StackError("noida-db is not installed; run `make setup`") from None
        return str(Path(noida_db.__file__).parent / "noida-db")

    def _command(self) -> list[str]:
        return [self.binary(), "start", "--only", "kafka",
                "--kafka-port", str(self.settings.kafka.port), "--host", LOOPBACK,
                "--data-dir", str(self.data_dir)]

    # SIGTERM makes noida-db write its snapshot; SIGKILL would lose recent messages.
    stop_signal = signal.SIGTERM

    def down(self) -> bool:
        # Stop the Kafka service inside the running server first (`noida-db stop kafka`: it stops
        # taking requests, then saves), and only then signal the process. A bare SIGTERM saves
        # first and goes on acknowledging produce requests for ~0.1 s, then drops them: measured
        # by `python -m tickerlake.dev.broker_durability`, 6 of 15 runs lost 1-5 acknowledged
        # messages with SIGTERM alone, 0 of 13 with this step first.
        if self.pid_file.running_pid() is not None:
            try:
                subprocess.run([self.binary(), "stop", "kafka", "--data-dir", str(self.data_dir)],
                               capture_output=True, timeout=30, check=False)
            except subprocess.TimeoutExpired:
                pass  # the SIGTERM below still saves; the durability probe shows what that risks
        return super().down()

    def is_healthy(self) -> bool:
        from tickerlake.core.health import kafka_answers

        kafka_answers(self.settings)
        return True


class PostgresCluster(Service):
    """A project-owned PostgreSQL cluster on a non-default port (Debian's server binaries)."""

    name = "postgres"
    start_timeout = 60.0
    # SIGINT is Postgres's "fast shutdown": roll back open transactions, checkpoint, exit.
    stop_signal = signal.SIGINT

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Postgres refuses to run as root: run it as the `postgres` system user when we are root.
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def ports(self) -> dict[str, int]:
        return {"TICKERLAKE_PG_PORT": self.settings.pg.port}

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.settings.pg.port}/{self.settings.pg.database}"

    @staticmethod
    def bin_dir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                       key=lambda p: int(p.parent.parent.name))
        if found:
            return found[-1].parent
        on_path = shutil.which("postgres")
        if on_path:
            return Path(on_path).parent
        raise StackError("PostgreSQL server binaries not found; install Debian's `postgresql` "
                         "package (make setup does)")

    def _owned(self, path: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _prepare(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._owned(self.data_dir)
        pwfile = self.state / "pg.pw"
        write_secret_file(pwfile, self.settings.pg.password.get_secret_value() + "\n", replace=True)
        self._owned(pwfile)
        try:
            done = subprocess.run(
                [str(self.bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", self.settings.pg.user,
                 f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"],
                capture_output=True, text=True, user=self.run_as,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise StackError(f"initdb failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")

    def _command(self) -> list[str]:
        return [str(self.bin_dir() / "postgres"), "-D", str(self.data_dir),
                "-c", f"listen_addresses={LOOPBACK}", "-p", str(self.settings.pg.port),
                # The socket lives in the owner-only data dir: only we reach the trust login.
                "-c", f"unix_socket_directories={self.data_dir}",
                # No replicas here: a table the warehouse load creates and fills in one transaction
                # (a new month of bars) is then synced once instead of WAL-logged row by row.
                "-c", "wal_level=minimal", "-c", "max_wal_senders=0"]

    def is_healthy(self) -> bool:
        from tickerlake.core.health import postgres_answers

        postgres_answers(self.settings, dbname="postgres")
        return True


def _answers(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def _debian_bin(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found:
        raise StackError(f"`{name}` is not installed; install Debian's `{package}` package (make setup does)")
    return found


class HttpService(Service):
    """A monitoring service with one HTTP port and a readiness URL."""

    ready_path = "/"
    port_setting = ""

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def ports(self) -> dict[str, int]:
        return {self.port_setting: self.port}

    @property
    def address(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def is_healthy(self) -> bool:
        return _answers(self.address + self.ready_path)


class Prometheus(HttpService):
    """Debian's Prometheus, scraping the exporter and the Pushgateway, evaluating the alert rules."""

    name = "prometheus"
    ready_path = "/-/ready"
    port_setting = "TICKERLAKE_MONITORING_PROMETHEUS_URL"

    @property
    def port(self) -> int:
        return self.settings.monitoring.prometheus_port

    @property
    def config_dir(self) -> Path:
        return self.state / "monitoring"

    def _prepare(self) -> None:
        from tickerlake.monitoring.config import Targets, render

        super()._prepare()
        render(self.config_dir, self.settings.monitoring, Targets.local(self.settings.monitoring))

    def _command(self) -> list[str]:
        return [_debian_bin("prometheus", "prometheus"),
                f"--config.file={self.config_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.data_dir}", f"--web.listen-address={LOOPBACK}:{self.port}",
                "--storage.tsdb.retention.time=15d", "--web.enable-lifecycle"]


class Alertmanager(HttpService):
    """Debian's Alertmanager: routes the alerts to the webhook receiver (one instance: no cluster)."""

    name = "alertmanager"
    ready_path = "/-/ready"
    port_setting = "TICKERLAKE_MONITORING_ALERTMANAGER_URL"

    @property
    def port(self) -> int:
        return self.settings.monitoring.alertmanager_port

    def _prepare(self) -> None:
        from tickerlake.monitoring.config import Targets, render

        super()._prepare()
        render(self.state / "monitoring", self.settings.monitoring, Targets.local(self.settings.monitoring))

    def _command(self) -> list[str]:
        return [_debian_bin("prometheus-alertmanager", "prometheus-alertmanager"),
                f"--config.file={self.state / 'monitoring' / 'alertmanager.yml'}",
                f"--storage.path={self.data_dir}", f"--web.listen-address={LOOPBACK}:{self.port}",
                # the cluster port would listen on every interface; a single instance needs none
                "--cluster.listen-address="]


class Pushgateway(HttpService):
    """Debian's Pushgateway: where the batch runs leave their figures for Prometheus."""

    name = "pushgateway"
    ready_path = "/-/ready"
    port_setting = "TICKERLAKE_MONITORING_PUSHGATEWAY_URL"

    @property
    def port(self) -> int:
        return self.settings.monitoring.pushgateway_port

    def _command(self) -> list[str]:
        return [_debian_bin("prometheus-pushgateway", "prometheus-pushgateway"),
                f"--web.listen-address={LOOPBACK}:{self.port}",
                f"--persistence.file={self.data_dir / 'metrics.db'}"]


class PythonHttpService(HttpService):
    """One of this project's own Python servers (run from the repository)."""

    def _env(self) -> dict[str, str]:
        from tickerlake.core.settings import REPO_ROOT

        return {"PYTHONPATH": str(REPO_ROOT)}


class Exporter(PythonHttpService):
    """tickerlake's exporter (tickerlake/monitoring/exporter.py), with Airflow's StatsD listener."""

    name = "exporter"
    ready_path = "/metrics"
    port_setting = "TICKERLAKE_MONITORING_EXPORTER_PORT"

    @property
    def port(self) -> int:
        return self.settings.monitoring.exporter_port

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "tickerlake.monitoring.exporter"]


class Dashboard(PythonHttpService):
    """The Streamlit dashboard (tickerlake/dashboard/), read-only as the analyst role."""

    name = "dashboard"
    ready_path = "/_stcore/health"
    port_setting = "TICKERLAKE_MONITORING_DASHBOARD_PORT"
    start_timeout = 90.0

    @property
    def port(self) -> int:
        return self.settings.monitoring.dashboard_port

    def _command(self) -> list[str]:
        from tickerlake.core.settings import REPO_ROOT

        return [_venv_bin("streamlit"), "run", str(REPO_ROOT / "tickerlake" / "dashboard" / "app.py"),
                f"--server.address={LOOPBACK}", f"--server.port={self.port}", "--server.headless=true",
                "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
                "--global.developmentMode=false", "--runner.magicEnabled=false",
                "--client.toolbarMode=viewer"]


def services(settings: Settings) -> list[Service]:
    """The data services every lane needs."""
    return [S3Server(settings), KafkaBroker(settings), PostgresCluster(settings)]


def monitoring_services(settings: Settings) -> list[Service]:
    """Metrics, alerts and the dashboard (after `services`: the exporter and the dashboard read them)."""
    return [Pushgateway(settings), Alertmanager(settings), Prometheus(settings), Exporter(settings),
            Dashboard(settings)]
