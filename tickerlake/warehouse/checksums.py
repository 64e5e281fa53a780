"""Key checksums computed by SQL, the same function in every engine that takes part.

A partition's checksum is (row count, Σ hi, Σ lo) over its rows, where each row's key columns are
joined into one text (`symbol|1704205800000000`: timestamps as epoch microseconds) and hi and lo
are the first two 24-bit slices of that text's MD5. Every engine here has `md5` returning
lower-case hex; only turning hex into a number differs (`Dialect.hex_to_int`). Sums of 24-bit
values stay exact in a double up to half a billion rows per partition, so even an engine that
sums in floating point (fakesnow) agrees. The lake side runs the same SQL in DuckDB over the
Arrow key columns the load already holds, so no key set is ever built in Python.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tickerlake.core.datasets import Kind

if TYPE_CHECKING:
    import pyarrow as pa

    from tickerlake.warehouse.base import Dialect
    from tickerlake.warehouse.datasets import Dataset

SLICE_HEX_DIGITS = 6  # 24 bits per slice
Checksum = tuple[int, int, int]  # rows, Σ hi, Σ lo


def key_text(dialect: "Dialect | DuckDBSQL", dataset: "Dataset", alias: str, lake_names: bool = False) -> str:
    """The row's key columns as one text, in `Dataset.file_keys` order."""
    parts = []
    for column in dataset.file_keys:
        ref = f"{alias}.{dialect.ident(column.lake if lake_names else column.name)}"
        if column.kind is Kind.TIMESTAMP:
            parts.append(dialect.epoch_us_text(ref))
        elif column.kind is Kind.TEXT:
            parts.append(f"COALESCE({ref}, '')")
        else:  # no declared key is of another kind; a new one must say how it prints
            raise ValueError(f"{dataset.name}: no checksum text for key column {column.name} ({column.kind})")
    return " || '|' || ".join(parts)


def checksum_query(dialect: "Dialect | DuckDBSQL", dataset: "Dataset", source: str, where: str = "TRUE",
                   lake_names: bool = False, group_by: str | None = None) -> str:
    """SELECT rows, Σ hi, Σ lo FROM `source` (aliased `t`) WHERE `where`; with `group_by` (a
    column of `source`), one row per group, the group's value first."""
    digest = f"MD5({key_text(dialect, dataset, 't', lake_names)})"
    hi = dialect.hex_to_int(f"SUBSTR(k.h, 1, {SLICE_HEX_DIGITS})")
    lo = dialect.hex_to_int(f"SUBSTR(k.h, {SLICE_HEX_DIGITS + 1}, {SLICE_HEX_DIGITS})")
    if group_by is None:
        return (f"SELECT COUNT(*), SUM({hi}), SUM({lo}) FROM "
                f"(SELECT {digest} AS h FROM {source} t WHERE {where}) k")
    return (f"SELECT k.g, COUNT(*), SUM({hi}), SUM({lo}) FROM "
            f"(SELECT t.{dialect.ident(group_by)} AS g, {digest} AS h FROM {source} t WHERE {where}) k GROUP BY k.g")


def as_checksum(row: Iterable) -> Checksum:
    count, hi, lo = row
    return int(count or 0), int(hi or 0), int(lo or 0)


def add(a: Checksum, b: Checksum) -> Checksum:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def label(checksum: Checksum) -> str:
    """The two sums, for a message."""
    return f"{checksum[1]:x}-{checksum[2]:x}"


class DuckDBSQL:
    """The checksum's SQL in DuckDB (the lake side)."""

    @staticmethod
    def ident(name: str) -> str:
        return f'"{name}"'

    @staticmethod
    def epoch_us_text(ref: str) -> str:
        return f"CAST(epoch_us({ref}) AS VARCHAR)"

    @staticmethod
    def hex_to_int(hex_text: str) -> str:
        return f"CAST('0x' || {hex_text} AS BIGINT)"


DUCKDB = DuckDBSQL()
_duck = threading.local()


def lake_checksum(dataset: "Dataset", table: "pa.Table") -> Checksum:
    """The checksum of one lake object's rows (its Arrow key columns), by DuckDB's SQL."""
    return lake_checksums(dataset, [table])[0]


def lake_checksums(dataset: "Dataset", tables: "list[pa.Table]") -> list[Checksum]:
    """The checksum of each of several lake objects, in one DuckDB query: each query costs ~3 ms
    beyond its rows, as much as 10,000 rows' checksums (docs/warehouse.md)."""
    import duckdb
    import pyarrow as pa

    if not tables:
        return []
    if not hasattr(_duck, "con"):  # a DuckDB connection is not shared between threads
        _duck.con = duckdb.connect()
    con = _duck.con
    names = [c.lake for c in dataset.file_keys]
    keys = pa.concat_tables(
        [t.select(names).append_column("object_index", pa.array([i] * t.num_rows, pa.int32()))
         for i, t in enumerate(tables)])
    con.register("lake_objects", keys)
    try:
        rows = con.execute(checksum_query(DUCKDB, dataset, "lake_objects", lake_names=True,
                                          group_by="object_index")).fetchall()
    finally:
        con.unregister("lake_objects")
    found = {int(row[0]): as_checksum(row[1:]) for row in rows}
    return [found.get(i, (0, 0, 0)) for i in range(len(tables))]
