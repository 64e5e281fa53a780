"""The warehouse interface, the load loop and the consistency check, shared by both backends.

Loading is by lake partition. A partition is (re)loaded when its set of (object key, ETag) differs
from what the load ledger recorded: its objects go into a staging table, are upserted (MERGE) into
the target, rows of that partition no longer in the lake are deleted, and the ledger is rewritten
last. Each step is idempotent, so a load killed anywhere is finished by the next run, and the
ledger (not the warehouse's own load history) decides what is loaded: nothing twice, nothing lost.
An Iceberg dataset whose table is still at the snapshot `load_state` recorded after its last full
load is skipped without reading a manifest or the ledger.

The consistency check compares per-partition row counts and key checksums computed by SQL
(`tickerlake.warehouse.checksums`): in the warehouse over the target's rows, and on the lake side
by DuckDB over the objects' keys, recorded in the ledger when the load read them. By default it
checks the partitions loaded since the last check; `full=True` re-reads the lake for every one.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tickerlake.core.datasets import LOAD_LEDGER, LOAD_STATE
from tickerlake.core.errors import TickerlakeError
from tickerlake.warehouse import checksums
from tickerlake.warehouse.checksums import Checksum
from tickerlake.warehouse.datasets import (
    Dataset,
    Kind,
    LakeObject,
    current_snapshot_id,
    lake_key_table,
    list_partitions,
)

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\?")
LEDGER = LOAD_LEDGER.name
STATE = LOAD_STATE.name
# The ledger columns a load writes (loaded_at takes its default; the check sets checked_at).
LEDGER_COLUMNS = [c for c in LOAD_LEDGER.column_names if c not in ("loaded_at", "checked_at")]
# Partitions a load writes together: (lake partition, its objects), one transaction where it can.
Unit = list[tuple[str, list[LakeObject]]]


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

    def epoch_us_text(self, ref: str) -> str:
        """A timestamp as its epoch microseconds, in decimal text (the checksum's key text)."""
        raise NotImplementedError

    def hex_to_int(self, hex_text: str) -> str:
        """The integer a few lower-case hex digits spell (the checksum's slices)."""
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
    snapshot_id: int | None = None  # the Iceberg snapshot loaded (None: a plain Parquet dataset)
    up_to_date: bool = False  # the table was still at the snapshot loaded last time: nothing read
    stages: dict[str, float] = field(default_factory=dict)  # seconds per step, summed over workers

    def line(self) -> str:
        if self.up_to_date:
            return (f"{self.dataset:<20} -> {self.target:<14} loaded 0 partition(s): up to date at snapshot "
                    f"{self.snapshot_id}")
        return (f"{self.dataset:<20} -> {self.target:<14} loaded {len(self.partitions_loaded)} partition(s), "
                f"{self.objects_loaded} object(s), {self.rows_loaded:,} row(s); "
                f"{self.partitions_unchanged} unchanged; {len(self.partitions_dropped)} dropped")


class Stages:
    """Seconds per load step, added up from every worker thread."""

    def __init__(self, into: dict[str, float]):
        self.into, self._lock = into, threading.Lock()

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.into[stage] = self.into.get(stage, 0.0) + time.perf_counter() - began


NO_STAGES = Stages({})


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
    def replace_partition(self, dataset: Dataset, partition: str, objects: list[LakeObject], s3,
                          stages: Stages = NO_STAGES) -> int:
        """Make the partition's rows equal the objects' rows; record them in the ledger with each
        object's row count and key checksum; rows loaded."""

    def units(self, dataset: Dataset, todo: list[tuple[str, list[LakeObject]]]) -> list[Unit]:
        """The partitions to load, grouped into units of work (each one transaction where the
        backend can): one partition each, unless the backend loads some better together."""
        return [[item] for item in todo]

    def replace_unit(self, dataset: Dataset, unit: Unit, s3, stages: Stages = NO_STAGES) -> int:
        """`replace_partition` for every partition of a unit; rows loaded."""
        return sum(self.replace_partition(dataset, p, objects, s3, stages) for p, objects in unit)

    @contextlib.contextmanager
    def sessions(self, workers: int) -> Iterator[list["Warehouse"]]:
        """Up to `workers` connections that may load partitions side by side (this one first).
        One, unless the backend says otherwise."""
        yield [self]

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

    def write_ledger(self, dataset: Dataset, partition: str, objects: list[LakeObject],
                     sums: list[Checksum]) -> None:
        """Replace the partition's ledger entries (inside the caller's transaction)."""
        self.write_ledgers(dataset, [(partition, objects, sums)])

    def write_ledgers(self, dataset: Dataset, entries: list[tuple[str, list[LakeObject], list[Checksum]]]) -> None:
        """Replace the ledger entries of several partitions in one DELETE and one insert (inside
        the caller's transaction): (partition, its objects, their checksums)."""
        d = self.dialect
        partitions = [partition for partition, _, _ in entries]
        self.execute(f"DELETE FROM {self.table(LEDGER)} WHERE {d.ident('dataset')} = ? "
                     f"AND {d.ident('lake_partition')} IN ({', '.join('?' for _ in partitions)})",
                     (dataset.name, *partitions))
        rows = [(dataset.name, partition, o.bucket, o.key, o.etag, n, dataset.target, hi, lo)
                for partition, objects, sums in entries
                for o, (n, hi, lo) in zip(objects, sums, strict=True)]
        if rows:
            self._insert(LEDGER, LEDGER_COLUMNS, rows)

    def loaded_snapshot(self, dataset: Dataset) -> int | None:
        """The Iceberg snapshot the dataset was last loaded to in full."""
        d = self.dialect
        rows = self.query(f"SELECT {d.ident('snapshot_id')} FROM {self.table(STATE)} "
                          f"WHERE {d.ident('dataset')} = ?", (dataset.name,))
        return int(rows[0][0]) if rows else None

    def record_snapshot(self, dataset: Dataset, snapshot_id: int | None) -> None:
        """Remember (or, with None, forget) the snapshot the dataset is loaded to."""
        d = self.dialect
        with self.transaction():
            self.execute(f"DELETE FROM {self.table(STATE)} WHERE {d.ident('dataset')} = ?", (dataset.name,))
            if snapshot_id is not None:
                self.execute(f"INSERT INTO {self.table(STATE)} ({d.ident('dataset')}, {d.ident('snapshot_id')}) "
                             "VALUES (?, ?)", (dataset.name, snapshot_id))

    def ledger_checksums(self, dataset: Dataset, *, unchecked_only: bool) -> dict[str, Checksum | None]:
        """partition -> the lake-side checksum the loads recorded (None where an older load did not
        record one); with `unchecked_only`, only partitions the check has not verified since."""
        d = self.dialect
        unchecked = f"SUM(CASE WHEN {d.ident('checked_at')} IS NULL THEN 1 ELSE 0 END)"
        rows = self.query(
            f"SELECT {d.ident('lake_partition')}, SUM({d.ident('row_count')}), SUM({d.ident('key_sum_hi')}), "
            f"SUM({d.ident('key_sum_lo')}), SUM(CASE WHEN {d.ident('key_sum_hi')} IS NULL THEN 1 ELSE 0 END), "
            f"{unchecked} FROM {self.table(LEDGER)} WHERE {d.ident('dataset')} = ? "
            f"GROUP BY {d.ident('lake_partition')}" + (f" HAVING {unchecked} > 0" if unchecked_only else ""),
            (dataset.name,))
        return {p: None if int(missing) else checksums.as_checksum((n, hi, lo))
                for p, n, hi, lo, missing, _ in rows}

    def mark_checked(self, dataset: Dataset, partition: str, keys: list[str]) -> None:
        """The partition's ledger rows for these objects were verified now."""
        if not keys:
            return
        d = self.dialect
        marks = ", ".join("?" for _ in keys)
        self.execute(f"UPDATE {self.table(LEDGER)} SET {d.ident('checked_at')} = CURRENT_TIMESTAMP "
                     f"WHERE {d.ident('dataset')} = ? AND {d.ident('lake_partition')} = ? "
                     f"AND {d.ident('object_key')} IN ({marks})", (dataset.name, partition, *keys))

    def ledger_keys(self, dataset: Dataset) -> dict[str, list[str]]:
        """partition -> its loaded object keys."""
        d = self.dialect
        result: dict[str, list[str]] = {}
        for partition, key in self.query(f"SELECT {d.ident('lake_partition')}, {d.ident('object_key')} "
                                         f"FROM {self.table(LEDGER)} WHERE {d.ident('dataset')} = ?",
                                         (dataset.name,)):
            result.setdefault(partition, []).append(key)
        return result

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
        self.record_snapshot(dataset, None)  # whatever goes, the dataset is no longer loaded in full
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
        # in one order everywhere: two partitions' transactions adding the same new symbols
        # side by side then wait for each other instead of deadlocking
        self.execute(d.upsert_symbols(self.table("dim_symbol"), f"SELECT DISTINCT t.{d.ident('symbol')} "
                                      f"FROM {self.table(dataset.target)} t "
                                      f"WHERE {d.predicate(dataset, partition)} AND t.{d.ident('symbol')} IS NOT NULL "
                                      f"ORDER BY t.{d.ident('symbol')}"))

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def partition_checksum(self, dataset: Dataset, partition: str) -> Checksum:
        """The partition's row count and key checksum in the warehouse, by SQL."""
        return checksums.as_checksum(self.query(checksums.checksum_query(
            self.dialect, dataset, self.table(dataset.target), self.dialect.predicate(dataset, partition)))[0])

    def count(self, name: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {self.table(name)}")[0][0])


def load_dataset(warehouse: Warehouse, dataset: Dataset, s3, *, reload: bool = False,
                 workers: int = 1) -> LoadReport:
    """Load every new, changed or vanished partition of one dataset (see the module docstring),
    up to `workers` partitions at a time where the backend allows it."""
    if reload:
        warehouse.forget(dataset)
    report = LoadReport(dataset.name, dataset.target)
    stages = Stages(report.stages)
    if dataset.iceberg:
        with stages.timed("snapshot"):
            report.snapshot_id = current_snapshot_id(dataset)
            if report.snapshot_id is not None and warehouse.loaded_snapshot(dataset) == report.snapshot_id:
                report.up_to_date = True
                log.info("%s", report.line())
                return report
    with stages.timed("list"):
        lake = list_partitions(s3, dataset, report.snapshot_id)
        ledger = warehouse.ledger(dataset)
    todo = []
    for partition, objects in lake.items():
        if ledger.get(partition) == {o.key: o.etag for o in objects}:
            report.partitions_unchanged += 1
        else:
            todo.append((partition, objects))
    units = warehouse.units(dataset, todo) if todo else []
    with warehouse.sessions(min(workers, len(units)) or 1) as sessions:
        idle: queue.SimpleQueue[Warehouse] = queue.SimpleQueue()
        for session in sessions:
            idle.put(session)

        def replace(unit: Unit) -> int:
            session = idle.get()
            try:
                return session.replace_unit(dataset, unit, s3, stages)
            finally:
                idle.put(session)

        if len(sessions) == 1:
            rows = [replace(unit) for unit in units]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(sessions), thread_name_prefix="tickerlake-load") as pool:
                rows = list(pool.map(replace, units))
    report.rows_loaded += sum(rows)
    for unit in units:
        for partition, objects in unit:
            report.objects_loaded += len(objects)
            report.partitions_loaded.append(partition)
    for partition in sorted(set(ledger) - set(lake)):
        warehouse.drop_partition(dataset, partition)
        report.partitions_dropped.append(partition)
    if report.snapshot_id is not None:
        warehouse.record_snapshot(dataset, report.snapshot_id)  # last: everything of it is in
    log.info("%s", report.line())
    return report


@dataclass(frozen=True)
class PartitionCheck:
    dataset: str
    partition: str
    lake: Checksum
    warehouse: Checksum

    @property
    def ok(self) -> bool:
        return self.lake == self.warehouse

    def line(self) -> str:
        return (f"{self.dataset} {self.partition}: lake {self.lake[0]:,} rows (checksum {checksums.label(self.lake)}), "
                f"warehouse {self.warehouse[0]:,} rows (checksum {checksums.label(self.warehouse)})")


def _lake_side(s3, dataset: Dataset, objects: list[LakeObject]) -> Checksum:
    total: Checksum = (0, 0, 0)
    for obj in objects:
        total = checksums.add(total, checksums.lake_checksum(dataset, lake_key_table(s3, dataset, obj)))
    return total


def check_dataset(warehouse: Warehouse, dataset: Dataset, s3, partitions: Iterable[str] | None = None,
                  *, full: bool = True) -> list[PartitionCheck]:
    """Per partition: row count and key checksum on the lake side and in the warehouse, by SQL.

    full: every partition in the lake or in the ledger (rows of a partition that left the lake
    must be gone from the warehouse too), the lake side read again from the lake's objects.
    Otherwise: the partitions loaded since the last check, against the checksums the load
    recorded in the ledger from the objects it read. Verified partitions are marked checked."""
    if full:
        lake = list_partitions(s3, dataset, current_snapshot_id(dataset) if dataset.iceberg else None)
        chosen = sorted(set(lake) | set(warehouse.ledger(dataset))) if partitions is None else sorted(partitions)
        recorded: dict[str, Checksum | None] = {p: None for p in chosen}
    else:
        recorded = warehouse.ledger_checksums(dataset, unchecked_only=True)
        chosen = sorted(recorded if partitions is None else set(recorded) & set(partitions))
        lake = {}
        if any(recorded[p] is None for p in chosen):  # loaded before checksums were recorded
            lake = list_partitions(s3, dataset, current_snapshot_id(dataset) if dataset.iceberg else None)
    loaded = warehouse.ledger_keys(dataset) if chosen else {}
    results = []
    for partition in chosen:
        lake_side = recorded[partition] or _lake_side(s3, dataset, lake.get(partition, []))
        check = PartitionCheck(dataset.name, partition, lake_side, warehouse.partition_checksum(dataset, partition))
        if check.ok:
            warehouse.mark_checked(dataset, partition, loaded.get(partition, []))
        results.append(check)
    return results


def raise_on_mismatch(checks: list[PartitionCheck]) -> None:
    bad = [c for c in checks if not c.ok]
    if bad:
        shown = "; ".join(c.line() for c in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ConsistencyError(f"{len(bad)} partition(s) differ between lake and warehouse: {shown}{more}. "
                               "Reload them with `python -m tickerlake.warehouse load --reload DATASET`")
