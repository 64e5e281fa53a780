"""What the warehouse loads from the lake: one `Dataset` per (lake prefix -> warehouse table).

A dataset's lake side is the data files of an Iceberg table's current snapshot (or, for a plain
Parquet dataset, a prefix of objects) in hive-style partitions
(`date=2026-01-02/`, `interval=1m/date=.../`, `date=.../hour=13/`); the partition is the unit of
loading and of the consistency check. The partition values become warehouse columns (Spark keeps
partition columns in the path, not in the files), as do the dataset's constants (for example
`origin = 'history'`). Columns and their types come from the lake datasets' declarations in
`tickerlake.core.datasets`; this module only says which of them a load takes and how it renames
them (`timestamp` -> `ts`).
"""
from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import pyarrow as pa
import pyarrow.parquet as pq

from tickerlake.core import datasets as declared
from tickerlake.core.datasets import ARROW_TYPES as ARROW
from tickerlake.core.datasets import Kind
from tickerlake.core.errors import TickerlakeError
from tickerlake.core.names import ICEBERG_DIR, Bucket, Table
from tickerlake.core.s3 import iter_objects


@dataclass(frozen=True)
class Column:
    """A column read from the lake's files (`lake` name) into a warehouse column (`name`)."""

    lake: str
    name: str
    kind: Kind


# Values a partition directory may hold: anything else in a path is not ours and is skipped.
PARTITION_VALUE = {"date": re.compile(r"^\d{4}-\d{2}-\d{2}$"), "hour": re.compile(r"^\d{1,2}$"),
                   "interval": re.compile(r"^(1d|1m|5m)$")}
PARTITION_COLUMN = {"date": ("date", Kind.DATE), "hour": ("hour", Kind.INT),
                    "interval": ("bar_interval", Kind.TEXT)}


@dataclass(frozen=True)
class Dataset:
    name: str
    bucket: Bucket
    prefix: str  # ends with "/"
    partition_by: tuple[str, ...]  # hive keys in path order
    target: str  # warehouse table (schema-less name)
    columns: tuple[Column, ...]
    keys: tuple[str, ...]  # warehouse key columns (may include partition columns and constants)
    constants: dict[str, tuple[str, Kind]] = field(default_factory=dict)
    # An Iceberg table: its data files are the ones its current snapshot lists (a killed write can
    # leave uncommitted files under the prefix; reading those would double rows).
    iceberg: str | None = None  # namespace.table
    # The target is partitioned by month of `date` in Postgres (sql/postgres/020_tables.sql; a test
    # checks they agree): its unique key includes `date`, and a month new to it loads index-less.
    month_partitioned: bool = False

    @property
    def unique_keys(self) -> tuple[str, ...]:
        """The target's unique key as Postgres declares it (ON CONFLICT's columns)."""
        return (*self.keys, "date") if self.month_partitioned else self.keys

    def partition_columns(self, partition: str) -> dict[str, tuple[str, Kind]]:
        """Warehouse column -> (value, kind) that a partition (and the dataset) fixes."""
        fixed = dict(self.constants)
        for part in partition.split("/"):
            key, value = part.split("=", 1)
            column, kind = PARTITION_COLUMN[key]
            fixed[column] = (value, kind)
        return fixed

    @property
    def file_keys(self) -> list[Column]:
        """The key columns stored in the files (the others are fixed per partition)."""
        by_name = {c.name: c for c in self.columns}
        return [by_name[k] for k in self.keys if k in by_name]

    def target_columns(self) -> list[str]:
        fixed = list(self.constants) + [PARTITION_COLUMN[p][0] for p in self.partition_by]
        return [c.name for c in self.columns] + fixed


def _take(spec: declared.Dataset, *names: str, rename: dict[str, str] | None = None) -> tuple[Column, ...]:
    """Columns of a declared lake dataset (all file columns when no names are given), renamed."""
    rename = rename or {}
    chosen = [spec.column(n) for n in names] if names else list(spec.file_columns())
    return tuple(Column(c.name, rename.get(c.name, c.name), c.kind) for c in chosen)


_TS = {"timestamp": "ts"}
_LIVE_BAR_COLUMNS = _take(declared.LIVE_BARS, "symbol", "window_start", "open", "high", "low", "close",
                          "volume", "vwap", "trades", rename={"window_start": "ts"})


def _data_prefix(table: Table) -> str:
    """Where an Iceberg table's data files are, relative to its bucket (Iceberg's default layout
    puts each file under its partition path: data/date=2026-01-02/hour=13/...)."""
    return f"{ICEBERG_DIR}/{table.table}/data/"
_BAR_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume", "vwap")


class Datasets(Enum):
    """Every dataset the load knows, in load order (dimensions first, then facts)."""

    # The processed tables are Iceberg only: a load takes the data files of the current snapshot.
    BARS_DAILY = Dataset(
        name="bars_daily", bucket=Bucket.PROCESSED, prefix=_data_prefix(Table.BARS_1D),
        partition_by=("date",), target="bars_daily", columns=_take(declared.BARS, rename=_TS),
        keys=("symbol", "ts"), iceberg=str(Table.BARS_1D), month_partitioned=True)
    BARS_MINUTE_HISTORY = Dataset(
        name="bars_minute_history", bucket=Bucket.PROCESSED, prefix=_data_prefix(Table.BARS_1M),
        partition_by=("date",), target="bars_intraday",
        columns=_take(declared.BARS, *_BAR_COLUMNS, rename=_TS),
        keys=("symbol", "bar_interval", "origin", "ts"),
        constants={"bar_interval": ("1m", Kind.TEXT), "origin": ("history", Kind.TEXT)}, iceberg=str(Table.BARS_1M),
        month_partitioned=True)
    ANOMALIES = Dataset(
        name="anomalies", bucket=Bucket.PROCESSED, prefix=_data_prefix(Table.ANOMALIES),
        partition_by=("interval", "date"), target="anomalies",
        # `interval` and `date` are the table's partitions (data/interval=1d/date=D/)
        columns=_take(declared.ANOMALIES, "symbol", "timestamp", "kind", "close", "return_simple",
                      "return_zscore", "volume", "volume_ratio", rename=_TS),
        keys=("symbol", "bar_interval", "kind", "ts"), iceberg=str(Table.ANOMALIES))
    TICKS = Dataset(
        name="ticks", bucket=Bucket.REALTIME, prefix=_data_prefix(Table.TICKS),
        partition_by=("date", "hour"), target="ticks",
        columns=_take(declared.TICKS), keys=("event_id",), iceberg=str(Table.TICKS))
    LIVE_BARS_1M = Dataset(
        name="live_bars_1m", bucket=Bucket.REALTIME, prefix=_data_prefix(Table.LIVE_BARS_1M),
        partition_by=("date",), target="bars_intraday", columns=_LIVE_BAR_COLUMNS,
        keys=("symbol", "bar_interval", "origin", "ts"),
        constants={"bar_interval": ("1m", Kind.TEXT), "origin": ("stream", Kind.TEXT)}, iceberg=str(Table.LIVE_BARS_1M),
        month_partitioned=True)
    LIVE_BARS_5M = Dataset(
        name="live_bars_5m", bucket=Bucket.REALTIME, prefix=_data_prefix(Table.LIVE_BARS_5M),
        partition_by=("date",), target="bars_intraday", columns=_LIVE_BAR_COLUMNS,
        keys=("symbol", "bar_interval", "origin", "ts"),
        constants={"bar_interval": ("5m", Kind.TEXT), "origin": ("stream", Kind.TEXT)}, iceberg=str(Table.LIVE_BARS_5M),
        month_partitioned=True)

    @classmethod
    def named(cls, name: str) -> Dataset:
        for member in cls:
            if member.value.name == name:
                return member.value
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(m.value.name for m in cls)}")

    @classmethod
    def all(cls) -> list[Dataset]:
        return [m.value for m in cls]


@dataclass(frozen=True)
class LakeObject:
    bucket: str
    key: str
    etag: str
    size: int

    @property
    def basename(self) -> str:
        return self.key.rsplit("/", 1)[1]


def _partition_of(dataset: Dataset, key: str) -> str | None:
    """The partition path ("date=2026-01-02") of an object key, None when it is not a data file."""
    relative = key[len(dataset.prefix):]
    parts = relative.split("/")
    if len(parts) != len(dataset.partition_by) + 1 or not parts[-1].endswith(".parquet"):
        return None
    for hive_key, part in zip(dataset.partition_by, parts[:-1], strict=True):
        name, _, value = part.partition("=")
        if name != hive_key or not PARTITION_VALUE[hive_key].match(value):
            return None
    return "/".join(parts[:-1])


def _listed(s3, dataset: Dataset) -> Iterable[LakeObject]:
    for obj in iter_objects(s3, dataset.bucket.value, dataset.prefix):
        yield LakeObject(dataset.bucket.value, obj["Key"], obj["ETag"].strip('"'), obj["Size"])


def _iceberg_table(dataset: Dataset):
    """The dataset's Iceberg table, or None before anything created it (the stream has not run)."""
    from pyiceberg.exceptions import NoSuchTableError

    from tickerlake.core.iceberg import iceberg_catalog

    assert dataset.iceberg is not None
    try:
        return iceberg_catalog().load_table(dataset.iceberg)
    except NoSuchTableError:
        return None


def current_snapshot_id(dataset: Dataset) -> int | None:
    """The Iceberg table's current snapshot (None: no table, or nothing committed yet)."""
    table = _iceberg_table(dataset)
    snapshot = table.current_snapshot() if table is not None else None
    return snapshot.snapshot_id if snapshot is not None else None


def _iceberg_files(dataset: Dataset, snapshot_id: int | None) -> Iterable[LakeObject]:
    """The data files of one snapshot of the table (immutable: the path is the version)."""
    table = _iceberg_table(dataset) if snapshot_id is not None else None
    if table is None:
        return
    marker = f"{dataset.bucket.value}/"
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        if task.delete_files:
            raise TickerlakeError(f"Iceberg table {dataset.iceberg} has delete files (merge-on-read): the load "
                                  "reads committed data files only; rewrite them (rewrite_data_files) first")
        key = task.file.file_path.split(marker, 1)[1]
        yield LakeObject(dataset.bucket.value, key, "iceberg", task.file.file_size_in_bytes)


def list_partitions(s3, dataset: Dataset, snapshot_id: int | None = None) -> dict[str, list[LakeObject]]:
    """The dataset's data objects in the lake, by partition (sorted, deterministic): for an Iceberg
    dataset the files of `snapshot_id` (its current snapshot when None)."""
    if dataset.iceberg and snapshot_id is None:
        snapshot_id = current_snapshot_id(dataset)
    partitions: dict[str, list[LakeObject]] = defaultdict(list)
    for obj in (_iceberg_files(dataset, snapshot_id) if dataset.iceberg else _listed(s3, dataset)):
        partition = _partition_of(dataset, obj.key)
        if partition is not None:
            partitions[partition].append(obj)
    return {p: sorted(objs, key=lambda o: o.key) for p, objs in sorted(partitions.items())}


def read_object(s3, obj: LakeObject, dataset: Dataset, columns: list[str] | None = None) -> pa.Table:
    """One Parquet object's columns, cast to the dataset's types (Spark's naive UTC timestamps
    become UTC instants)."""
    body = s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
    wanted = [c for c in dataset.columns if columns is None or c.lake in columns]
    return typed(dataset, pq.read_table(io.BytesIO(body), columns=[c.lake for c in wanted]))


def typed(dataset: Dataset, table: pa.Table) -> pa.Table:
    """The dataset's columns `table` has, cast to the dataset's types."""
    wanted = [c for c in dataset.columns if c.lake in table.column_names]
    arrays = []
    for column in wanted:
        array = table.column(column.lake)
        target = ARROW[column.kind]
        if column.kind is Kind.TIMESTAMP and array.type.tz is None:
            array = array.cast(pa.timestamp("us")).cast(target)  # naive values are UTC
        arrays.append(array.cast(target))
    return pa.table(arrays, names=[c.lake for c in wanted])


def lake_key_table(s3, dataset: Dataset, obj: LakeObject) -> pa.Table:
    """One object's key columns (`Dataset.file_keys`, lake names), typed as the load types them."""
    return read_object(s3, obj, dataset, columns=[c.lake for c in dataset.file_keys])
