"""The warehouse interface, the load loop and the consistency check, shared by both backends.

Loading is by lake partition. A partition is (re)loaded when its set of (object key, ETag) differs
from what the load ledger recorded: its objects go into a staging table, are upserted (MERGE) into
the target, rows of that partition no longer in the lake are deleted, and the ledger is rewritten
last. Each step is idempotent, so a load killed anywhere is finished by the next run, and the
ledger (not the warehouse's own load history) decides what is loaded: nothing twice, nothing lost.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable

from tickerlake.errors import TickerlakeError
from tickerlake.warehouse.datasets import (Dataset, Kind, LakeObject, key_checksum, lake_key_rows,
                                           list_partitions)

log = logging.getLogger(__name__)


class Backend(str, Enum):
    POSTGRES = "postgres"
    SNOWFLAKE = "snowflake"

    def __str__(self) -> str:
        return self.value


class ConsistencyError(TickerlakeError):
    """The lake and the warehouse disagree on at least one partition."""


class Dialect:
    """The SQL both backends share, parameterised by identifier case and type names."""

    types: dict[Kind, str]
    upper: bool = False

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
    """One warehouse: the load ledger, partition replacement and key reads, per backend."""

    backend: Backend
    dialect: Dialect

    @abstractmethod
    def ensure_schema(self) -> None:
        """Fail with one clear line (or create what the backend may create) if tables are missing."""

    @abstractmethod
    def table(self, name: str) -> str:
        """The qualified SQL name of a warehouse table or view."""

    @abstractmethod
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only query (`params` in the backend's placeholder style)."""

    @abstractmethod
    def query_table(self, sql: str) -> tuple[list[str], list[tuple]]:
        """Column names and rows of a read-only query."""

    @abstractmethod
    def ledger(self, dataset: Dataset) -> dict[str, dict[str, str]]:
        """partition -> {object key: ETag} as last loaded."""

    @abstractmethod
    def replace_partition(self, dataset: Dataset, partition: str, objects: list[LakeObject], s3) -> int:
        """Make the partition's rows equal the objects' rows; record them in the ledger; rows loaded."""

    @abstractmethod
    def drop_partition(self, dataset: Dataset, partition: str) -> None:
        """Delete a partition that is gone from the lake, with its ledger entries."""

    @abstractmethod
    def forget(self, dataset: Dataset, partitions: list[str] | None = None) -> int:
        """Remove ledger entries (all of the dataset's when None) so the next load reloads them."""

    @abstractmethod
    def close(self) -> None: ...

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
