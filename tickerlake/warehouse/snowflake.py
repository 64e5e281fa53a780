"""The Snowflake warehouse: the lake's Parquet reaches a stage, `COPY INTO` a staging table (at most
1,000 files per COPY, Snowflake's FILES limit), then MERGE into the target. No row-by-row INSERTs.

Stages (settings.snowflake.stage):
- internal: each object is downloaded and PUT (AUTO_COMPRESS=FALSE: Parquet is compressed
  already) into a fresh directory of a named internal stage, which COPY ... PURGE=TRUE empties;
- external: one stage per lake bucket on its S3 URL (storage integration); COPY names the files.

COPY runs with FORCE=TRUE: the ledger, not Snowflake's 64-day load history, decides what is
loaded, so a changed object with the same name is loaded again and an unchanged one never is.
Steps run in autocommit and each is idempotent with the ledger written last (fakesnow cannot run
MERGE inside an explicit transaction); a load killed between steps is finished by the next run.
Tested against fakesnow; the same tests run against a real account when its settings are set.
"""
from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tickerlake.core.errors import TickerlakeError
from tickerlake.core.settings import REPO_ROOT, SnowflakeSettings, StageKind
from tickerlake.warehouse import checksums
from tickerlake.warehouse.base import NO_STAGES, Backend, Dialect, Stages, Warehouse
from tickerlake.warehouse.datasets import Dataset, Kind, LakeObject, typed

SQL_DIR = REPO_ROOT / "sql" / "snowflake"


def staging_table(dataset: Dataset) -> str:
    """A transient staging table per dataset (mapped load tasks run side by side); transient, not
    temporary, so it is visible to every cursor of the session's connection."""
    return f"STG_{dataset.name.upper()}"

COPY_FILES_MAX = 1000  # Snowflake's limit on FILES = (...) in one COPY


class SnowflakeDialect(Dialect):
    upper = True
    types = {Kind.TEXT: "VARCHAR", Kind.TIMESTAMP: "TIMESTAMP_TZ", Kind.DATE: "DATE",
             Kind.DOUBLE: "DOUBLE", Kind.BIGINT: "NUMBER(38, 0)", Kind.INT: "NUMBER(38, 0)",
             Kind.BOOL: "BOOLEAN"}

    def placeholder(self, position: int) -> str:
        return "%s"  # the connector's default paramstyle (pyformat)

    def epoch_us_text(self, ref: str) -> str:
        return f"TO_VARCHAR(DATE_PART(EPOCH_MICROSECOND, {ref}))"

    def hex_to_int(self, hex_text: str) -> str:
        # digit by digit: TO_NUMBER(..., 'XXXXXX') is Snowflake's own, but fakesnow cannot run it
        n = checksums.SLICE_HEX_DIGITS
        return "(" + " + ".join(f"(POSITION(SUBSTR({hex_text}, {i}, 1), '0123456789abcdef') - 1) * {16 ** (n - i)}"
                                for i in range(1, n + 1)) + ")"

    def upsert_symbols(self, table: str, select: str) -> str:
        # MERGE statements on one table are serialised by Snowflake's table lock, so two loads
        # adding the same new symbol cannot both insert it.
        return (f"MERGE INTO {table} t USING ({select}) s ON t.SYMBOL = s.SYMBOL "
                "WHEN NOT MATCHED THEN INSERT (SYMBOL) VALUES (s.SYMBOL)")

    def merge(self, dataset: Dataset, partition: str, table: str, staging: str) -> str:
        columns = [self.ident(c) for c in dataset.target_columns()]
        updates = ", ".join(f"{self.ident(c)} = s.{self.ident(c)}"
                            for c in dataset.target_columns() if c not in dataset.keys)
        return (f"MERGE INTO {table} t USING ({self.mapped_select(dataset, partition, staging)}) s "
                f"ON {self.key_match(dataset, 't', 's')} "
                f"WHEN MATCHED AND ({self.changed(dataset, 't', 's')}) THEN UPDATE SET {updates} "
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
                f"VALUES ({', '.join('s.' + c for c in columns)})")


def copy_statements(settings: SnowflakeSettings, dataset: Dataset, partition: str,
                    objects: list[LakeObject], batch_dirs: list[str] | None = None) -> list[str]:
    """The COPY INTO statements loading `objects` into the staging table, ≤ 1,000 files each.

    internal: one statement per uploaded batch directory (`batch_dirs`, one per 1,000 objects);
    external: the files named relative to the partition's directory on the bucket's stage."""
    # the vectorized Parquet scanner: faster, and it reads Iceberg's Parquet types as they are
    options = ("FILE_FORMAT = (TYPE = PARQUET USE_VECTORIZED_SCANNER = TRUE) "
               "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE")
    if settings.stage is StageKind.INTERNAL:
        return [f"COPY INTO {staging_table(dataset)} FROM @{settings.stage_name}/{d} {options} PURGE = TRUE"
                for d in batch_dirs or []]
    stage = external_stage_name(settings, dataset.bucket.value)
    statements = []
    for i in range(0, len(objects), COPY_FILES_MAX):
        files = ", ".join(f"'{o.basename}'" for o in objects[i:i + COPY_FILES_MAX])
        statements.append(f"COPY INTO {staging_table(dataset)} FROM @{stage}/{dataset.prefix}{partition}/ "
                          f"FILES = ({files}) {options}")
    return statements


def external_stage_name(settings: SnowflakeSettings, bucket: str) -> str:
    return f"{settings.stage_name}_{bucket.upper()}"


class SnowflakeWarehouse(Warehouse):
    backend = Backend.SNOWFLAKE
    dialect = SnowflakeDialect()

    def __init__(self, settings: SnowflakeSettings, connect: Callable[[], object] | None = None):
        """`connect` (e.g. Airflow's SnowflakeHook(...).get_conn) overrides the settings' account."""
        self.settings = settings
        try:
            self.conn: Any = connect() if connect else self._connect(settings)
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes one line
            raise TickerlakeError(f"cannot connect to Snowflake account {settings.account!r}: "
                                  f"{str(exc).splitlines()[0]}") from None
        self.label = f"snowflake://{settings.account or 'connection'}/{settings.database}.{settings.db_schema}"
        self._execute(f"CREATE SCHEMA IF NOT EXISTS {settings.database}.{settings.db_schema}")
        self._execute(f"USE SCHEMA {settings.database}.{settings.db_schema}")

    @staticmethod
    def _connect(settings: SnowflakeSettings):
        import snowflake.connector

        options = {k: v for k, v in {
            "account": settings.account, "user": settings.user,
            "password": settings.password.get_secret_value() if settings.password else None,
            "database": settings.database, "warehouse": settings.warehouse or None,
            "role": settings.role or None}.items() if v}
        return snowflake.connector.connect(**options)

    def _fetch(self, sql: str, params: tuple) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchall()

    def _execute(self, sql: str, params: tuple = ()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            return max(cur.rowcount or 0, 0)

    def _insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        names = ", ".join(self.dialect.ident(c) for c in columns)
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.table(table)} ({names}) "
                            f"VALUES ({', '.join(['%s'] * len(columns))})", rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        # Autocommit: each step is idempotent and the ledger is written last (module docstring).
        yield

    def table(self, name: str) -> str:
        return self.dialect.ident(name)

    def query_table(self, sql: str) -> tuple[list[str], list[tuple]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return [d[0].lower() for d in cur.description], cur.fetchall()

    def ensure_schema(self) -> None:
        """Create the tables, views and stage(s) if missing (idempotent DDL from sql/snowflake/)."""
        for path in sorted(SQL_DIR.glob("*.sql")):
            if path.name.startswith("000_"):  # roles: an administrator's one-off, not the loader's
                continue
            for statement in _statements(path.read_text()):
                self._execute(statement)
        s = self.settings
        if s.stage is StageKind.INTERNAL:
            self._execute(f"CREATE STAGE IF NOT EXISTS {s.stage_name} FILE_FORMAT = (TYPE = PARQUET)")
        else:
            for bucket in ("processed", "realtime"):
                self._execute(f"CREATE STAGE IF NOT EXISTS {external_stage_name(s, bucket)} "
                              f"URL = '{s.external_url.format(bucket=bucket)}' "
                              f"STORAGE_INTEGRATION = {s.storage_integration} FILE_FORMAT = (TYPE = PARQUET)")

    def replace_partition(self, dataset: Dataset, partition: str, objects: list[LakeObject], s3,
                          stages: Stages = NO_STAGES) -> int:
        d, target, staging = self.dialect, self.table(dataset.target), staging_table(dataset)
        self._execute(f"CREATE OR REPLACE TRANSIENT TABLE {staging} {d.staging_ddl(dataset)}")
        with tempfile.TemporaryDirectory(prefix="tickerlake-sf-") as tmp:
            sums, batch_dirs = [], []
            for i in range(0, len(objects), COPY_FILES_MAX):
                batch = objects[i:i + COPY_FILES_MAX]
                local = Path(tmp, str(i))
                local.mkdir()
                for obj in batch:
                    path = local / obj.basename
                    s3.download_file(obj.bucket, obj.key, str(path))
                    keys = pq.read_table(path, columns=[c.lake for c in dataset.file_keys])
                    sums.append(checksums.lake_checksum(dataset, typed(dataset, keys)))
                if self.settings.stage is StageKind.INTERNAL:
                    batch_dir = f"{dataset.name}/{uuid.uuid4().hex}"
                    for obj in batch:
                        self._execute(f"PUT file://{local / obj.basename} @{self.settings.stage_name}/"
                                      f"{batch_dir} AUTO_COMPRESS = FALSE OVERWRITE = TRUE")
                    batch_dirs.append(batch_dir)
            for statement in copy_statements(self.settings, dataset, partition, objects, batch_dirs):
                self._execute(statement)
        self._execute(d.merge(dataset, partition, target, staging))
        self._execute(d.delete_missing(dataset, partition, target, staging))
        self.add_symbols(dataset, partition)
        self.write_ledger(dataset, partition, objects, sums)
        self._execute(f"DROP TABLE IF EXISTS {staging}")
        return sum(n for n, _, _ in sums)

    def close(self) -> None:
        self.conn.close()


def _statements(text: str) -> list[str]:
    """Split a DDL file on `;` (the files hold no procedural code or literal semicolons)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
