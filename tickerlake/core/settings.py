"""The one typed settings object.

Every value comes from an environment variable named ``TICKERLAKE_<GROUP>_<FIELD>`` (for example
``TICKERLAKE_S3_ENDPOINT_URL``), or from a ``.env`` file at the repository root; defaults point at
the embedded local stack. `.env.example` documents every variable.

Each group is a small class validated on construction. A missing or invalid value raises
`ConfigError` with one line naming the variable and what is wrong, so a CLI can print it instead
of a stack trace. Secrets are `SecretStr`: they never appear in a repr or a log line.
"""
from __future__ import annotations

import difflib
import functools
import logging
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickerlake.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "TICKERLAKE_"
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _config(group: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=f"{ENV_PREFIX}{group}_",
        env_file=REPO_ROOT / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


class S3Settings(BaseSettings):
    """The S3 object store: MinIO in compose, the embedded SeaweedFS S3 server locally."""

    model_config = _config("S3")

    endpoint_url: str = "http://127.0.0.1:8333"
    access_key_id: str = Field(min_length=3)
    secret_access_key: SecretStr = Field(min_length=8)
    region: str = "us-east-1"
    console_url: str = "http://127.0.0.1:8337"
    # The object store's web console asks for this login (SeaweedFS admin locally, through its
    # environment, never its command line; MinIO's console in compose uses MinIO's root login).
    console_user: str = Field(default="admin", min_length=1)
    console_password: SecretStr = Field(min_length=12)

    _check_urls = field_validator("endpoint_url", "console_url")(_http_url)

    @property
    def port(self) -> int:
        return _port_of(self.endpoint_url)


class KafkaSettings(BaseSettings):
    """The Kafka-protocol broker: Apache Kafka in compose, noida-db locally."""

    model_config = _config("KAFKA")

    bootstrap_servers: str = "127.0.0.1:9092"
    ticks_partitions: int = Field(default=6, ge=1, le=1024)

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        bad = [s for s in servers if not _HOST_PORT.match(s)]
        if not servers or bad:
            raise ValueError(f"must be a comma-separated list of host:port, got {value!r}")
        return ",".join(servers)

    @property
    def port(self) -> int:
        return int(self.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])


class PostgresSettings(BaseSettings):
    """The Postgres server: warehouse fallback, Iceberg JDBC catalog, Airflow metadata."""

    model_config = _config("PG")

    host: str = "127.0.0.1"
    port: int = Field(default=55432, ge=1, le=65535)
    database: str = Field(default="tickerlake", pattern=r"^[a-z_][a-z0-9_]*$")
    # The owner of the database (the superuser of the local cluster, like POSTGRES_USER in the
    # official image).
    user: str = Field(default="tickerlake", pattern=r"^[a-z_][a-z0-9_]*$")
    password: SecretStr = Field(min_length=8)
    analyst_user: str = Field(default="analyst", pattern=r"^[a-z_][a-z0-9_]*$")
    analyst_password: SecretStr = Field(min_length=8)
    # The warehouse loader: writes the warehouse tables, owns nothing (sql/postgres/001_roles.sql).
    loader_user: str = Field(default="loader", pattern=r"^[a-z_][a-z0-9_]*$")
    loader_password: SecretStr = Field(min_length=8)
    # Airflow's metadata database, on the same server.
    airflow_database: str = Field(default="airflow", pattern=r"^[a-z_][a-z0-9_]*$")

    def dsn(self, *, as_analyst: bool = False) -> str:
        """A libpq connection string (psycopg); carries the password, never log it."""
        user, secret = (
            (self.analyst_user, self.analyst_password) if as_analyst else (self.user, self.password)
        )
        return (
            f"host={self.host} port={self.port} dbname={self.database} user={user} "
            f"password={secret.get_secret_value()} connect_timeout=5"
        )

    def loader_uri(self) -> str:
        """A postgresql:// URI for the loader (the ADBC driver); carries the password."""
        from urllib.parse import quote

        return (f"postgresql://{quote(self.loader_user, safe='')}:"
                f"{quote(self.loader_password.get_secret_value(), safe='')}@{self.host}:{self.port}/"
                f"{self.database}?connect_timeout=5")

    def sqlalchemy_url(self, database: str | None = None, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URL (Airflow's metadata DB, pyiceberg); carries the password."""
        from urllib.parse import quote

        return (f"postgresql+{driver}://{quote(self.user, safe='')}:"
                f"{quote(self.password.get_secret_value(), safe='')}@{self.host}:{self.port}/"
                f"{database or self.database}")

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"


class SparkSettings(BaseSettings):
    """Spark: local mode here, the Spark master in compose."""

    model_config = _config("SPARK")

    master: str = "local[2]"
    driver_memory: str = Field(default="2g", pattern=r"^\d+[kmgKMG]$")
    shuffle_partitions: int = Field(default=4, ge=1)
    jars_dir: Path = REPO_ROOT / "jars"
    # The Spark UI binds to SPARK_LOCAL_IP (we set 127.0.0.1); tests turn it off to save memory.
    ui_enabled: bool = True
    # Where `python -m tickerlake.dev.jars` looks first; empty = registry packages only.
    maven_repo: str = "https://repo1.maven.org/maven2"
    # A local folder standing in for Maven (jars matched by their pinned SHA-256, whatever their
    # names): on machines without Maven Central, the folder that carries Spark's Kafka source.
    local_jars_dir: Path = REPO_ROOT.parent / "shared" / "jars" / "spark-kafka"

    @property
    def class_archive(self) -> Path:
        """The driver JVM's class archive (`python -m tickerlake.dev.class_archive` makes it)."""
        return self.jars_dir / "spark-classes.jsa"

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        if not re.match(r"^(local(\[(\*|\d+)\])?|spark://[^\s]+|yarn|k8s://[^\s]+)$", value):
            raise ValueError(f"must be local, local[N], local[*] or spark://host:port, got {value!r}")
        return value


class IcebergSettings(BaseSettings):
    """The Iceberg catalog: a JDBC catalog whose tables live in the Postgres server.

    Spark (org.apache.iceberg.jdbc.JdbcCatalog) and pyiceberg (SqlCatalog) read and write the
    same catalog tables, so both see the same Iceberg tables; see docs/architecture.md.
    """

    model_config = _config("ICEBERG")

    catalog: str = Field(default="lake", pattern=r"^[a-z_][a-z0-9_]*$")
    # lake_maintenance: snapshots older than this are expired (time travel reaches this far back;
    # the newest snapshot the stream's replay check and its bars query need is always kept).
    snapshot_retention_hours: float = Field(default=24.0, ge=0)
    # Files no snapshot references are deleted only when older than this: a write in flight has
    # files that look orphaned until it commits, so it must exceed the longest write.
    orphan_min_age_hours: float = Field(default=24.0, ge=1)


class StreamSettings(BaseSettings):
    """The Spark Structured Streaming job (spark_jobs/stream_ticks.py)."""

    model_config = _config("STREAM")

    trigger_seconds: float = Field(default=1.0, gt=0)
    # The bars query's trigger: each of its micro-batches MERGEs the changed windows.
    bars_trigger_seconds: float = Field(default=2.0, gt=0)
    # Events older than (latest event time seen - this) are too late: counted and quarantined.
    watermark_seconds: int = Field(default=600, ge=0)
    # An event stamped more than this after the broker received it is quarantined: one far-future
    # event would otherwise move the watermark and make every later event "too late".
    max_future_seconds: int = Field(default=300, ge=1)
    # A producer's re-send of an event reaches the broker within this of the first copy: the
    # dedup state (RocksDB) keeps event ids this long, by the records' Kafka timestamps.
    dedup_seconds: int = Field(default=120, ge=1)
    # The most records one micro-batch takes from the topic (bounds a catch-up batch's size).
    max_offsets_per_trigger: int = Field(default=200_000, ge=1)
    # Keep each micro-batch's records as they came in s3://raw/archive/ticks/ (replays, audits).
    raw_archive: bool = True
    # Where the queries' checkpoints (offsets, commits, RocksDB state) live. Empty: the state
    # directory's local disk, next to the PID files of the one host that runs the job (an S3
    # checkpoint commit is a copy per file: measured 1.1 s of every micro-batch here). Any Hadoop
    # URI works, s3a://realtime/_checkpoints for one shared across hosts.
    checkpoint_root: str = ""
    # The job holds a lease in Postgres for its whole life (tickerlake/core/lease.py): a copy on
    # another host waits until it expires this long after the holder's last renewal.
    lease_seconds: float = Field(default=30.0, ge=3)


class StageKind(StrEnum):
    """How the lake's Parquet reaches Snowflake."""

    INTERNAL = "internal"  # PUT each object into a named internal stage (any S3 store, MinIO too)
    EXTERNAL = "external"  # an external stage on the lake's bucket (the lake is on real AWS S3)


class SnowflakeSettings(BaseSettings):
    """The Snowflake warehouse. Configured (account set) -> the load goes to Snowflake; otherwise
    to the Postgres warehouse. In Airflow the connection `snowflake_default` takes precedence."""

    model_config = _config("SNOWFLAKE")

    account: str = ""
    user: str = ""
    password: SecretStr | None = None
    database: str = Field(default="TICKERLAKE", pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
    db_schema: str = Field(default="WAREHOUSE", pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
    warehouse: str = ""
    role: str = ""
    stage: StageKind = StageKind.INTERNAL
    stage_name: str = Field(default="TICKERLAKE_LAKE", pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
    # external stages only: the S3 URL of a lake bucket, with {bucket} for the lake's bucket name
    # (one external stage per bucket), and the storage integration that lets Snowflake read it.
    external_url: str = ""
    storage_integration: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.account)

    @model_validator(mode="after")
    def _complete(self) -> "SnowflakeSettings":
        if self.configured and not self.user:
            raise ValueError("TICKERLAKE_SNOWFLAKE_USER is not set but TICKERLAKE_SNOWFLAKE_ACCOUNT is")
        if self.stage is StageKind.EXTERNAL and not (
                self.external_url.startswith("s3://") and "{bucket}" in self.external_url):
            raise ValueError("TICKERLAKE_SNOWFLAKE_EXTERNAL_URL must be an s3:// URL containing "
                             "{bucket} (e.g. s3://acme-lake-{bucket}/) when "
                             f"TICKERLAKE_SNOWFLAKE_STAGE=external (got {self.external_url!r})")
        if self.stage is StageKind.EXTERNAL and not self.storage_integration:
            raise ValueError("TICKERLAKE_SNOWFLAKE_STORAGE_INTEGRATION is not set but "
                             "TICKERLAKE_SNOWFLAKE_STAGE=external needs one")
        return self


def checkpoint_root(settings: "Settings") -> str:
    """The streaming checkpoints' root URI (see StreamSettings.checkpoint_root)."""
    root = settings.stream.checkpoint_root or (settings.stack.state_dir / "stream" / "checkpoints").as_uri()
    return root.rstrip("/")


class WarehouseBackend(StrEnum):
    """Which warehouse the load writes to."""

    AUTO = "auto"  # Snowflake when configured (Airflow connection or account set), else Postgres
    POSTGRES = "postgres"
    SNOWFLAKE = "snowflake"


class WarehouseSettings(BaseSettings):
    """The warehouse lane: which backend the load and the check use (tickerlake/warehouse/)."""

    model_config = _config("WAREHOUSE")

    backend: WarehouseBackend = WarehouseBackend.AUTO
    # Units (a new month, or one partition) loaded side by side, each on its own connection
    # (Postgres; Snowflake loads one at a time and parallelises inside its COPY). Measured on two
    # cores at 10M rows: 2 workers 269k rows/s (cores 87% busy), 3 workers 317k (91%): the third
    # fills the time the others wait for a commit's sync or the object store.
    load_workers: int = Field(default=3, ge=1, le=32)


class AirflowSettings(BaseSettings):
    """The local Airflow UI (`make airflow-ui`); compose sets its own ports."""

    model_config = _config("AIRFLOW")

    port: int = Field(default=8080, ge=1, le=65535)


class MonitoringSettings(BaseSettings):
    """Metrics, alerts and the dashboard (tickerlake/monitoring/, tickerlake/dashboard/).

    The local stack runs Prometheus, Alertmanager, the Pushgateway, tickerlake's exporter (which
    also receives Airflow's StatsD metrics) and the dashboard on these loopback URLs and ports;
    compose sets its own service names."""

    model_config = _config("MONITORING")

    prometheus_url: str = "http://127.0.0.1:9090"
    alertmanager_url: str = "http://127.0.0.1:9093"
    # Batch tasks (backfill, transform, load) push their run's figures here; empty: no push.
    pushgateway_url: str = "http://127.0.0.1:9091"
    # tickerlake's exporter: the stream's and the lake's state, read at each scrape
    exporter_port: int = Field(default=9108, ge=1, le=65535)
    # the exporter's StatsD listener (UDP), where Airflow sends its own metrics
    statsd_port: int = Field(default=9125, ge=1, le=65535)
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    # Where Alertmanager sends alerts and Airflow its task-failure notices (a webhook taking
    # JSON POSTs). Empty: alerts are only shown in Alertmanager's UI. A secret (Slack-style
    # webhook URLs carry their token).
    webhook_url: SecretStr = SecretStr("")
    # The stream is stalled when its job runs but has committed no micro-batch for this long.
    stall_seconds: int = Field(default=120, ge=1)
    # How long a condition must hold before its alert fires, and Prometheus's scrape interval.
    alert_for_seconds: int = Field(default=30, ge=0)
    scrape_seconds: int = Field(default=5, ge=1)

    @field_validator("prometheus_url", "alertmanager_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("pushgateway_url")
    @classmethod
    def _optional_url(cls, value: str) -> str:
        return _http_url(value) if value else ""

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            _http_url(value.get_secret_value())
        return value

    @property
    def prometheus_port(self) -> int:
        return _port_of(self.prometheus_url)

    @property
    def alertmanager_port(self) -> int:
        return _port_of(self.alertmanager_url)

    @property
    def pushgateway_port(self) -> int:
        return _port_of(self.pushgateway_url) if self.pushgateway_url else 0


class MarketSettings(BaseSettings):
    """Which exchange (calendar and time zone) a symbol trades on, where its ticker does not say.

    Yahoo Finance's suffixes name the exchange (`VOD.L`, `7203.T`); a symbol without a known
    suffix is an NYSE symbol unless listed here (tickerlake/core/market.py)."""

    model_config = _config("MARKET")

    # "SAP=XETR,VOD=XLON": symbol=ISO 10383 code of an exchange-calendars calendar
    symbol_exchanges: str = ""

    @field_validator("symbol_exchanges")
    @classmethod
    def _pairs(cls, value: str) -> str:
        from tickerlake.core.market import EXCHANGES
        from tickerlake.core.names import invalid_symbols

        for pair in (p.strip() for p in value.split(",") if p.strip()):
            symbol, _, mic = pair.rpartition("=")  # symbols may hold "=" themselves (ES=F)
            if not mic or invalid_symbols([symbol.strip().upper()]):
                raise ValueError(f"{pair!r} is not SYMBOL=EXCHANGE (for example SAP=XETR)")
            if mic.strip().upper() not in EXCHANGES:
                raise ValueError(f"{pair!r}: unknown exchange {mic.strip()!r} (one of {', '.join(sorted(EXCHANGES))})")
        return value

    @property
    def exchange_by_symbol(self) -> dict[str, str]:
        pairs = (p.rpartition("=") for p in self.symbol_exchanges.split(",") if p.strip())
        return {symbol.strip().upper(): mic.strip().upper() for symbol, _, mic in pairs}


class AlphaVantageSettings(BaseSettings):
    """The Alpha Vantage market-data API (ingestion/sources/alphavantage.py).

    The key may instead come from the Airflow connection `alphavantage_default` (its password);
    it is a secret: never logged, never in a task's rendered arguments."""

    model_config = _config("ALPHAVANTAGE")

    api_key: SecretStr = SecretStr("")
    url: str = "https://www.alphavantage.co/query"
    # The free tier's limits: requests per minute (shared by every task on the host through a
    # SQLite bucket in the state directory) and per day.
    requests_per_minute: int = Field(default=5, ge=1)
    requests_per_day: int = Field(default=25, ge=1)
    # A throttle reply ("Note"/"Information") is retried after backoff_seconds, doubling, this often.
    retries: int = Field(default=4, ge=0)
    backoff_seconds: float = Field(default=15.0, ge=0)

    _check_url = field_validator("url")(_http_url)

    @model_validator(mode="after")
    def _limits(self) -> "AlphaVantageSettings":
        if self.requests_per_day <= self.requests_per_minute:
            raise ValueError(f"TICKERLAKE_ALPHAVANTAGE_REQUESTS_PER_DAY ({self.requests_per_day}) must be more than "
                             f"TICKERLAKE_ALPHAVANTAGE_REQUESTS_PER_MINUTE ({self.requests_per_minute})")
        return self


class StackSettings(BaseSettings):
    """Where the embedded local stack keeps its data, logs and PID files."""

    model_config = _config("STACK")

    state_dir: Path = REPO_ROOT / ".state"


class Settings(BaseModel):
    """All settings, grouped; build it with `get_settings()` or `load_settings()`."""

    model_config = {"frozen": True}

    s3: S3Settings
    kafka: KafkaSettings
    pg: PostgresSettings
    spark: SparkSettings
    iceberg: IcebergSettings
    stream: StreamSettings
    stack: StackSettings
    snowflake: SnowflakeSettings
    warehouse: WarehouseSettings
    airflow: AirflowSettings
    monitoring: MonitoringSettings
    market: MarketSettings
    alphavantage: AlphaVantageSettings


_GROUPS: dict[str, type[BaseSettings]] = {
    "s3": S3Settings,
    "kafka": KafkaSettings,
    "pg": PostgresSettings,
    "spark": SparkSettings,
    "iceberg": IcebergSettings,
    "stream": StreamSettings,
    "stack": StackSettings,
    "snowflake": SnowflakeSettings,
    "warehouse": WarehouseSettings,
    "airflow": AirflowSettings,
    "monitoring": MonitoringSettings,
    "market": MarketSettings,
    "alphavantage": AlphaVantageSettings,
}
log = logging.getLogger(__name__)


def known_variables() -> set[str]:
    """Every TICKERLAKE_* variable a settings group reads."""
    return {f"{cls.model_config.get('env_prefix', '')}{name}".upper()
            for cls in _GROUPS.values() for name in cls.model_fields}


def _env_file_names(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    names = set()
    for line in path.read_text(errors="replace").splitlines():
        name = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#"):
            names.add(name)
    return names


def unknown_variables(names: set[str]) -> list[str]:
    """One line per TICKERLAKE_* name no setting reads, naming the closest known setting."""
    known = known_variables()
    lines = []
    for name in sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a tickerlake setting and is ignored{hint}")
    return lines


def _port_of(url: str) -> int:
    match = re.match(r"^https?://[^/:]+:(\d+)", url)
    if match:
        return int(match.group(1))
    return 443 if url.startswith("https") else 80


def _one_line(group: type[BaseSettings], error: ValidationError) -> ConfigError:
    """Turn pydantic's multi-line report into one line naming the variable(s)."""
    prefix = group.model_config.get("env_prefix", "")
    parts = []
    for item in error.errors():
        if not item["loc"]:  # a check across fields: its message names the variables itself
            parts.append(item["msg"].removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        var = f"{prefix}{field}".upper()
        if item["type"] == "missing":
            parts.append(f"{var} is not set (see .env.example)")
        else:
            message = item["msg"].removeprefix("Value error, ")
            secret = any(word in var.lower() for word in ("secret", "password", "key"))
            if not isinstance(item.get("input"), (SecretStr, dict)) and not secret:
                message += f" (got {item.get('input')!r})" if "got " not in message else ""
            parts.append(f"{var}: {message}")
    return ConfigError("; ".join(parts))


def load_settings(**overrides: Any) -> Settings:
    """Read every group from the environment; `overrides` maps group name -> field dict."""
    env_file = S3Settings.model_config.get("env_file")
    names = set(os.environ) | (_env_file_names(Path(str(env_file))) if env_file else set())
    for line in unknown_variables(names):
        log.warning("tickerlake: warning: %s", line)
    groups = {}
    for name, cls in _GROUPS.items():
        try:
            groups[name] = cls(**overrides.get(name, {}))
        except ValidationError as exc:
            raise _one_line(cls, exc) from None
    return Settings.model_validate(groups)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
