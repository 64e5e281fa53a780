"""The warehouse interface, the load loop and the consistency check, shared by both backends.

Loading is by lake partition. A partition is (re)loaded when its set of (object key, ETag) differs
from what the load ledger recorded: its objects go into a staging table, are upserted (MERGE) into
the target, rows of that partition no longer in the lake are deleted, and the ledger is rewritten
last. Each step is idempotent, so a load killed anywhere is finished by the next run, and the
ledger (not the warehouse's own load history) decides what is loaded: nothing twice, nothing lost.
"""
from __future__ import annotations

import contextlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tickerlake.core.datasets import LOAD_LEDGER
from tickerlake.core.errors import TickerlakeError
from tickerlake.warehouse.datasets import Dataset, Kind, LakeObject, key_checksum, lake_key_rows, list_partitions

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\?")
LEDGER = LOAD_LEDGER.name
# The ledger columns a load writes (loaded_at takes its default).
LEDGER_COLUMNS = [c for c in LOAD_LEDGER.column_names if c != "loaded_at"]


class Backend(StrEnum):
    POSTGRES = "postgres"
    SNOWFLAKE = "snowflake"


class ConsistencyError(TickerlakeError):
    """The lake and the warehouse disagree on at least one partition."""


class Dialect:
    """The SQL both backends share, parameterised by identifier case and type names."""

    types: dict[Kind, str]
    upper: bool = False

    def placeholder(self, position: int) -> str:
        """The driver's placeholder for the `position`-th parameter (1-based)."""
        raise NotImplementedError

    def upsert_symbols(self, table: str, select: str) -> str:
        """Insert the symbols `select` returns into dim_symbol, skipping those already there."""
        raise NotImplementedError

    def native(self, sql: str) -> str:
        """`sql` written with `?` placeholders (the interface's style) in the driver's style."""
        counter = iter(range(1, 10_000))
        return _PLACEHOLDER.sub(lambda _: self.placeholder(next(counter)), sql)

    def ident(self, name: str) -> str:
        return f'"{name.upper() if self.upper else name}"'

    def literal(self, value: str, kind: Kind) -> str:
        quoted = "'" + value.replace("'", "''") + "'"
        return f"CAST({quoted} AS {self.types[kind]})" if kind is not Kind.TEXT else quoted

    def staging_ddl(self, dataset: Dataset) -> str:
        columns = ", ".join(f"{self.ident(c.lake)} {self.types[c.kind]}" for c in dataset.columns)
        return f"({columns})"

    def mapped_select(self, dataset: Dataset, partition: str, staging: str) -> str:
        """The staging rows as target rows: renamed columns plus the partition's fixed values."""
        parts = [f"s.{self.ident(c.lake)} AS {self.ident(c.name)}" for c in dataset.columns]
        parts += [f"{self.literal(value, kind)} AS {self.ident(column)}"
                  for column, (value, kind) in dataset.partition_columns(partition).items()]
        return f"SELECT {', '.join(parts)} FROM {staging} s"

    def predicate(self, dataset: Dataset, partition: str, alias: str = "t") -> str:
        return " AND ".join(f"{alias}.{self.ident(column)} = {self.literal(value, kind)}"
                            for column, (value, kind) in dataset.partition_columns(partition).items())

    def key_match(self, dataset: Dataset, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{self.ident(k)} = {right}.{self.ident(k)}" for k in dataset.keys)

    def delete_missing(self, dataset: Dataset, partition: str, table: str, staging: str) -> str:
        """Rows of the partition that the lake no longer has."""
        return (f"DELETE FROM {table} t WHERE {self.predicate(dataset, partition)} AND NOT EXISTS "
                f"(SELECT 1 FROM ({self.mapped_select(dataset, partition, staging)}) src "
                f"WHERE {self.key_match(dataset, 't', 'src')})")

    def changed(self, dataset: Dataset, old: str, new: str) -> str:
        """True when any non-key column differs (NULL-safe): unchanged rows are not rewritten."""
        others = [c for c in dataset.target_columns() if c not in dataset.keys]
        return " OR ".join(f"{old}.{self.ident(c)} IS DISTINCT FROM {new}.{self.ident(c)}" for c in others)


@dataclass
class LoadReport:
    dataset: str
    target: str
    partitions_loaded: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    partitions_unchanged: int = 0
    objects_loaded: int = 0
    rows_loaded: int = 0

    def line(self) -> str:
        return (f"{self.dataset:<20} -> {self.target:<14} loaded {len(self.partitions_loaded)} partition(s), "
                f"{self.objects_loaded} object(s), {self.rows_loaded:,} row(s); "
                f"{self.partitions_unchanged} unchanged; {len(self.partitions_dropped)} dropped")


class Warehouse(ABC):
    """One warehouse: the load ledger, partition replacement and key reads.

    SQL passed to `query` and `execute` uses `?` placeholders whatever the backend; the ledger,
    dropping and forgetting partitions are written once here, and each backend supplies only
    its driver calls (`_fetch`, `_execute`, `_insert`, `transaction`) and `replace_partition`.
    """

    backend: Backend
    dialect: Dialect
    label: str  # where it is, for humans (no secret)

    @abstractmethod
    def ensure_schema(self) -> None:
        """Fail with one clear line (or create what the backend may create) if tables are missing."""

    @abstractmethod
    def table(self, name: str) -> str:
        """The qualified SQL name of a warehouse table or view."""

    @abstractmethod
    def _fetch(self, sql: str, params: tuple) -> list[tuple]:
        """Rows of a statement in the driver's own placeholder style."""

    @abstractmethod
    def _execute(self, sql: str, params: tuple) -> int:
        """Run a statement without a result set (driver style); the rows it affected."""

    @abstractmethod
    def _insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Append rows to a warehouse table in bulk."""

    @abstractmethod
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements inside commit together (or, where the backend cannot, each on its own)."""

    @abstractmethod
    def query_table(self, sql: str) -> tuple[list[str], list[tuple]]:
        """Column names and rows of a read-only query."""

    @abstractmethod
    def replace_partition(self, dataset: Dataset, partition: str, objects: list[LakeObject], s3) -> int:
        """Make the partition's rows equal the objects' rows; record them in the ledger; rows loaded."""

    @abstractmethod
    def close(self) -> None: ...

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple]:
        """Rows of a read-only query; `?` placeholders."""
        return self._fetch(self.dialect.native(sql), params)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run a statement; `?` placeholders; the rows it affected."""
        return self._execute(self.dialect.native(sql), params)

    def ledger(self, dataset: Dataset) -> dict[str, dict[str, str]]:
        """partition -> {object key: ETag} as last loaded."""
        d = self.dialect
        result: dict[str, dict[str, str]] = {}
        for partition, key, etag in self.query(
                f"SELECT {d.ident('lake_partition')}, {d.ident('object_key')}, {d.ident('etag')} "
                f"FROM {self.table(LEDGER)} WHERE {d.ident('dataset')} = ?", (dataset.name,)):
            result.setdefault(partition, {})[key] = etag
        return result

    def write_ledger(self, dataset: Dataset, partition: str, objects: list[LakeObject], rows: list[int]) -> None:
        """Replace the partition's ledger entries (inside the caller's transaction)."""
        d = self.dialect
        self.execute(f"DELETE FROM {self.table(LEDGER)} WHERE {d.ident('dataset')} = ? "
                     f"AND {d.ident('lake_partition')} = ?", (dataset.name, partition))
        if objects:
            self._insert(LEDGER, LEDGER_COLUMNS,
                         [(dataset.name, partition, o.bucket, o.key, o.etag, n, dataset.target)
                          for o, n in zip(objects, rows, strict=True)])

    def drop_partition(self, dataset: Dataset, partition: str) -> None:
        """Delete a partition that is gone from the lake, with its ledger entries."""
        with self.transaction():
            self.execute(f"DELETE FROM {self.table(dataset.target)} t "
                         f"WHERE {self.dialect.predicate(dataset, partition)}")
            self.write_ledger(dataset, partition, [], [])

    def forget(self, dataset: Dataset, partitions: list[str] | None = None) -> int:
        """Remove ledger entries (all of the dataset's when None) so the next load reloads them;
        returns how many entries went."""
        d = self.dialect
        where = f"{d.ident('dataset')} = ?"
        if partitions is None:
            return self.execute(f"DELETE FROM {self.table(LEDGER)} WHERE {where}", (dataset.name,))
        forgotten = 0
        with self.transaction():
            for partition in partitions:
                forgotten += self.execute(f"DELETE FROM {self.table(LEDGER)} WHERE {where} "
                                          f"AND {d.ident('lake_partition')} = ?", (dataset.name, partition))
        return forgotten

    def add_symbols(self, dataset: Dataset, partition: str) -> None:
        """The partition's symbols into dim_symbol, race-free: mapped loads run side by side under
        a real scheduler, and a plain INSERT of the same new symbol from two of them would fail."""
        d = self.dialect
        self.execute(d.upsert_symbols(self.table("dim_symbol"), f"SELECT DISTINCT t.{d.ident('symbol')} "
                                      f"FROM {self.table(dataset.target)} t "
                                      f"WHERE {d.predicate(dataset, partition)} AND t.{d.ident('symbol')} IS NOT NULL"))

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def key_rows(self, dataset: Dataset, partition: str) -> list[tuple]:
        keys = ", ".join(f"t.{self.dialect.ident(c.name)}" for c in dataset.file_keys)
        return self.query(f"SELECT {keys} FROM {self.table(dataset.target)} t "
                          f"WHERE {self.dialect.predicate(dataset, partition)}")

    def count(self, name: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {self.table(name)}")[0][0])


def load_dataset(warehouse: Warehouse, dataset: Dataset, s3, *, reload: bool = False) -> LoadReport:
    """Load every new, changed or vanished partition of one dataset (see the module docstring)."""
    if reload:
        warehouse.forget(dataset)
    lake = list_partitions(s3, dataset)
    ledger = warehouse.ledger(dataset)
    report = LoadReport(dataset.name, dataset.target)
    for partition, objects in lake.items():
        if ledger.get(partition) == {o.key: o.etag for o in objects}:
            report.partitions_unchanged += 1
            continue
        report.rows_loaded += warehouse.replace_partition(dataset, partition, objects, s3)
        report.objects_loaded += len(objects)
        report.partitions_loaded.append(partition)
    for partition in sorted(set(ledger) - set(lake)):
        warehouse.drop_partition(dataset, partition)
        report.partitions_dropped.append(partition)
    log.info("%s", report.line())
    return report


@dataclass(frozen=True)
class PartitionCheck:
    dataset: str
    partition: str
    lake: tuple[int, str]
    warehouse: tuple[int, str]

    @property
    def ok(self) -> bool:
        return self.lake == self.warehouse

    def line(self) -> str:
        return (f"{self.dataset} {self.partition}: lake {self.lake[0]:,} rows (checksum {self.lake[1]}), "
                f"warehouse {self.warehouse[0]:,} rows (checksum {self.warehouse[1]})")


def check_dataset(warehouse: Warehouse, dataset: Dataset, s3,
                  partitions: Iterable[str] | None = None) -> list[PartitionCheck]:
    """Per partition: row count and key checksum in the lake and in the warehouse.

    Covers the lake's partitions and those the ledger still has (rows of a partition that left
    the lake must be gone from the warehouse too)."""
    lake = list_partitions(s3, dataset)
    chosen = sorted(set(lake) | set(warehouse.ledger(dataset))) if partitions is None else sorted(partitions)
    results = []
    for partition in chosen:
        lake_side = key_checksum(lake_key_rows(s3, dataset, lake.get(partition, [])))
        warehouse_side = key_checksum(warehouse.key_rows(dataset, partition))
        results.append(PartitionCheck(dataset.name, partition, lake_side, warehouse_side))
    return results


def raise_on_mismatch(checks: list[PartitionCheck]) -> None:
    bad = [c for c in checks if not c.ok]
    if bad:
        shown = "; ".join(c.line() for c in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ConsistencyError(f"{len(bad)} partition(s) differ between lake and warehouse: {shown}{more}. "
                               "Reload them with `python -m tickerlake.warehouse load --reload DATASET`")
