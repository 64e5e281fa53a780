"""What the warehouse loads from the lake: one `Dataset` per (lake prefix -> warehouse table).

A dataset's lake side is a prefix of Parquet objects in hive-style partitions
(`date=2026-01-02/`, `interval=1m/date=.../`, `date=.../hour=13/`); the partition is the unit of
loading and of the consistency check. The partition values become warehouse columns (Spark keeps
partition columns in the path, not in the files), as do the dataset's constants (for example
`origin = 'history'`). Columns and their types come from the lake datasets' declarations in
`tickerlake.core.datasets`; this module only says which of them a load takes and how it renames
them (`timestamp` -> `ts`).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum

import pyarrow as pa
import pyarrow.parquet as pq

from tickerlake.core import datasets as declared
from tickerlake.core.datasets import ARROW_TYPES as ARROW
from tickerlake.core.datasets import Kind
from tickerlake.core.names import (
    PROCESSED_ANOMALIES_PREFIX,
    REALTIME_BARS_PREFIX,
    REALTIME_TICKS_PREFIX,
    Bucket,
    processed_bars_prefix,
)
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
    # Spark's file sink: only files its _spark_metadata log committed are data (a killed batch can
    # leave uncommitted part files behind; reading those would double rows).
    sink_log: bool = False

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
_BAR_COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume", "vwap")


class Datasets(Enum):
    """Every dataset the load knows, in load order (dimensions first, then facts)."""

    BARS_DAILY = Dataset(
        name="bars_daily", bucket=Bucket.PROCESSED, prefix=processed_bars_prefix("1d"),
        partition_by=("date",), target="bars_daily", columns=_take(declared.BARS, rename=_TS),
        keys=("symbol", "ts"))
    BARS_MINUTE_HISTORY = Dataset(
        name="bars_minute_history", bucket=Bucket.PROCESSED, prefix=processed_bars_prefix("1m"),
        partition_by=("date",), target="bars_intraday",
        columns=_take(declared.BARS, *_BAR_COLUMNS, rename=_TS),
        keys=("symbol", "bar_interval", "origin", "ts"),
        constants={"bar_interval": ("1m", Kind.TEXT), "origin": ("history", Kind.TEXT)})
    ANOMALIES = Dataset(
        name="anomalies", bucket=Bucket.PROCESSED, prefix=f"{PROCESSED_ANOMALIES_PREFIX}/",
        partition_by=("interval", "date"), target="anomalies",
        # `interval` and `date` are in the path (anomalies/interval=1d/date=D/)
        columns=_take(declared.ANOMALIES, "symbol", "timestamp", "kind", "close", "return_simple",
                      "return_zscore", "volume", "volume_ratio", rename=_TS),
        keys=("symbol", "bar_interval", "kind", "ts"))
    TICKS = Dataset(
        name="ticks", bucket=Bucket.REALTIME, prefix=f"{REALTIME_TICKS_PREFIX}/",
        partition_by=("date", "hour"), target="ticks",
        columns=_take(declared.TICKS), keys=("event_id",), sink_log=True)
    LIVE_BARS = Dataset(
        name="live_bars", bucket=Bucket.REALTIME, prefix=f"{REALTIME_BARS_PREFIX}/",
        partition_by=("interval", "date"), target="bars_intraday",
        columns=_take(declared.LIVE_BARS, "symbol", "window_start", "open", "high", "low", "close",
                      "volume", "vwap", "trades", rename={"window_start": "ts"}),
        keys=("symbol", "bar_interval", "origin", "ts"),
        constants={"origin": ("stream", Kind.TEXT)})

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


def _committed_sink_files(s3, dataset: Dataset) -> set[str] | None:
    """Keys Spark's file sink committed (its _spark_metadata log); None if there is no log yet.

    The log holds one file per batch (`N`), compacted every few batches into `N.compact` that
    carries all earlier entries; each entry is a JSON line with the file's path and action."""
    log_prefix = f"{dataset.prefix}_spark_metadata/"
    batches: dict[int, str] = {}
    for obj in iter_objects(s3, dataset.bucket.value, log_prefix):
        name = obj["Key"][len(log_prefix):]
        match = re.fullmatch(r"(\d+)(\.compact)?", name)
        if match:
            batches[int(match.group(1))] = obj["Key"]
    if not batches:
        return None
    compacted = [b for b, k in batches.items() if k.endswith(".compact")]
    start = max(compacted) if compacted else min(batches)
    files: set[str] = set()
    for batch in sorted(b for b in batches if b >= start):
        body = s3.get_object(Bucket=dataset.bucket.value, Key=batches[batch])["Body"].read().decode()
        for line in body.splitlines()[1:]:  # line 0 is the log version ("v1")
            entry = json.loads(line)
            key = entry["path"].split(f"{dataset.bucket.value}/", 1)[1]
            (files.add if entry.get("action", "add") == "add" else files.discard)(key)
    return files


def list_partitions(s3, dataset: Dataset) -> dict[str, list[LakeObject]]:
    """The dataset's data objects in the lake, by partition (sorted, deterministic)."""
    committed = _committed_sink_files(s3, dataset) if dataset.sink_log else None
    partitions: dict[str, list[LakeObject]] = defaultdict(list)
    for obj in iter_objects(s3, dataset.bucket.value, dataset.prefix):
        partition = _partition_of(dataset, obj["Key"])
        if partition is None or (dataset.sink_log and obj["Key"] not in (committed or set())):
            continue
        partitions[partition].append(
            LakeObject(dataset.bucket.value, obj["Key"], obj["ETag"].strip('"'), obj["Size"]))
    return {p: sorted(objs, key=lambda o: o.key) for p, objs in sorted(partitions.items())}


def read_object(s3, obj: LakeObject, dataset: Dataset, columns: list[str] | None = None) -> pa.Table:
    """One Parquet object's columns, cast to the dataset's types (Spark's naive UTC timestamps
    become UTC instants)."""
    body = s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
    wanted = [c for c in dataset.columns if columns is None or c.lake in columns]
    table = pq.read_table(io.BytesIO(body), columns=[c.lake for c in wanted])
    arrays = []
    for column in wanted:
        array = table.column(column.lake)
        target = ARROW[column.kind]
        if column.kind is Kind.TIMESTAMP and array.type.tz is None:
            array = array.cast(pa.timestamp("us")).cast(target)  # naive values are UTC
        arrays.append(array.cast(target))
    return pa.table(arrays, names=[c.lake for c in wanted])


# --- Checksums: the same function on both sides of the consistency check -------------------

def _normal(value) -> object:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "as_integer_ratio") and float(value).is_integer():  # Decimal / numpy ints
        return int(value)
    return value


def key_checksum(rows: Iterable[tuple]) -> tuple[int, str]:
    """(row count, order-independent checksum) of key tuples: a sum of 64-bit BLAKE2b hashes."""
    count, total = 0, 0
    for row in rows:
        digest = hashlib.blake2b(repr(tuple(_normal(v) for v in row)).encode(), digest_size=8).digest()
        total = (total + int.from_bytes(digest, "big")) % 2**64
        count += 1
    return count, f"{total:016x}"


def lake_key_rows(s3, dataset: Dataset, objects: list[LakeObject]) -> Iterable[tuple]:
    """The file key tuples (`Dataset.file_keys` order) of a partition's objects."""
    lake_keys = [c.lake for c in dataset.file_keys]
    for obj in objects:
        table = read_object(s3, obj, dataset, columns=lake_keys)
        yield from zip(*(table.column(lake).to_pylist() for lake in lake_keys), strict=True)
