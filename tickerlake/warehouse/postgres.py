"""The Postgres warehouse: binary COPY from Arrow (encoded by pgpq, sent by psycopg), straight
into the target for a partition it has no row of, else into a staging table and then an upsert;
one transaction per partition, partitions side by side on separate connections (`sessions`).
Connects as the loader role, which writes but owns nothing.

The bar tables are partitioned by month (sql/postgres/025_month_partitions.sql): the partitions of
a month the warehouse has no child for load as one unit, into a child created without indexes in
the unit's transaction; its indexes are built once, sorted, and it is attached at the end."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tickerlake.core import datasets as declared
from tickerlake.core.errors import TickerlakeError
from tickerlake.core.settings import PostgresSettings
from tickerlake.warehouse import checksums
from tickerlake.warehouse.base import NO_STAGES, Backend, Dialect, Stages, Unit, Warehouse
from tickerlake.warehouse.datasets import ARROW, Dataset, Kind, LakeObject, read_object

SCHEMA = "warehouse"
STAGING = "pg_temp.stg_load"
TABLES = ("bars_daily", "bars_intraday", "anomalies", "ticks", declared.LOAD_LEDGER.name,
          declared.LOAD_STATE.name, declared.DIM_SYMBOL.name)


def _as_target(dataset: Dataset, partition: str, table: pa.Table) -> pa.Table:
    """Lake columns renamed to the target's, plus the partition's fixed values as columns."""
    columns = {c.name: table.column(c.lake) for c in dataset.columns}
    for column, (value, kind) in dataset.partition_columns(partition).items():
        typed = pa.array([value] * table.num_rows, pa.string())
        columns[column] = typed.cast(ARROW[kind]) if kind is not Kind.DATE else \
            pc.strptime(typed, "%Y-%m-%d", "s").cast(pa.date32())
    return pa.table(columns)


class PostgresDialect(Dialect):
    types = {Kind.TEXT: "text", Kind.TIMESTAMP: "timestamptz", Kind.DATE: "date",
             Kind.DOUBLE: "double precision", Kind.BIGINT: "bigint", Kind.INT: "integer",
             Kind.BOOL: "boolean"}

    def placeholder(self, position: int) -> str:
        return "%s"  # psycopg's

    def epoch_us_text(self, ref: str) -> str:
        return f"((EXTRACT(EPOCH FROM {ref}) * 1000000)::bigint)::text"  # numeric: exact

    def hex_to_int(self, hex_text: str) -> str:
        return f"('x' || {hex_text})::bit({4 * checksums.SLICE_HEX_DIGITS})::integer"

    def upsert(self, dataset: Dataset, partition: str, table: str, staging: str) -> str:
        columns = dataset.target_columns()
        names = ", ".join(self.ident(c) for c in columns)
        updates = ", ".join(f"{self.ident(c)} = EXCLUDED.{self.ident(c)}"
                            for c in columns if c not in dataset.unique_keys)
        keys = ", ".join(self.ident(k) for k in dataset.unique_keys)
        return (f"INSERT INTO {table} AS t ({names}) {self.mapped_select(dataset, partition, staging)} "
                f"ON CONFLICT ({keys}) DO UPDATE SET {updates} "
                f"WHERE {self.changed(dataset, 't', 'EXCLUDED')}")

    def upsert_symbols(self, table: str, select: str) -> str:
        return f"INSERT INTO {table} ({self.ident('symbol')}) {select} ON CONFLICT DO NOTHING"


class PostgresWarehouse(Warehouse):
    backend = Backend.POSTGRES
    dialect = PostgresDialect()

    def __init__(self, pg: PostgresSettings):
        import psycopg

        self.pg = pg

        try:
            self.conn = psycopg.connect(pg.loader_uri())
        except psycopg.Error as exc:  # the driver's message carries no password
            raise TickerlakeError(f"cannot connect to the Postgres warehouse at {pg.host}:{pg.port} "
                                  f"as {pg.loader_user}: {str(exc).splitlines()[0]}") from None
        self.label = f"postgres://{pg.host}:{pg.port}/{pg.database}"
        self._cur: Any = None  # the open transaction's cursor
        self._known_symbols: set[str] = set()  # in dim_symbol, as this connection committed them
        # A partition's rows and its ledger rows commit together: if a crash loses the last
        # commits, the ledger loses them too and the next load redoes those partitions. So the
        # load need not wait for each commit's WAL flush.
        with self.conn.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            # A new month's indexes are built by one process: the load already runs a worker per
            # core, and parallel builds would only add their start-up and merge on the same cores.
            cur.execute("SET max_parallel_maintenance_workers = 0")
        self.conn.commit()

    def table(self, name: str) -> str:
        return f"{SCHEMA}.{self.dialect.ident(name)}"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._cur is not None:  # nested: part of the outer transaction
            yield
            return
        with self.conn.cursor() as cur:
            self._cur = cur
            try:
                yield
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                self._cur = None

    def _fetch(self, sql: str, params: tuple) -> list[tuple]:
        with self.transaction():
            self._cur.execute(sql, params or None)
            return self._cur.fetchall()

    def _execute(self, sql: str, params: tuple) -> int:
        with self.transaction():
            self._cur.execute(sql, params or None)
            return max(self._cur.rowcount, 0)

    def _insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        with self.transaction():
            self._copy(self.table(table), pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)}))

    def _copy(self, table: str, data: pa.Table, *, freeze: bool = False) -> None:
        copy_arrow(self._cur, table, data, freeze=freeze)

    def query_table(self, sql: str) -> tuple[list[str], list[tuple]]:
        with self.transaction():
            self._cur.execute(sql)
            return [d[0] for d in self._cur.description], self._cur.fetchall()

    def ensure_schema(self) -> None:
        missing = [t for t in TABLES if not self.query("SELECT to_regclass(?) IS NOT NULL", (f"{SCHEMA}.{t}",))[0][0]]
        if missing:
            raise TickerlakeError(f"the Postgres warehouse has no table(s) {', '.join(missing)}: "
                                  "run `python -m minio_init --only warehouse` (make up does)")

    @contextlib.contextmanager
    def sessions(self, workers: int) -> Iterator[list[Warehouse]]:
        """This connection and `workers - 1` more: partitions are independent transactions, and one
        connection's COPY leaves the server's second core idle."""
        extra: list[Warehouse] = []
        try:
            for _ in range(max(workers, 1) - 1):
                extra.append(PostgresWarehouse(self.pg))
            yield [self, *extra]
        finally:
            for session in extra:
                session.close()

    def replace_partition(self, dataset: Dataset, partition: str, objects: list[LakeObject], s3,
                          stages: Stages = NO_STAGES) -> int:
        with stages.timed("read"):
            tables = [read_object(s3, obj, dataset) for obj in objects]
        with stages.timed("checksum"):
            sums = checksums.lake_checksums(dataset, tables)
        symbols = {v for t in tables if "symbol" in t.column_names
                   for v in pc.unique(t.column("symbol")).to_pylist() if v is not None}
        target, d = self.table(dataset.target), self.dialect
        with stages.timed("write"), self.transaction():
            cur = self._cur
            with stages.timed("write.copy"):
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {target} t WHERE {d.predicate(dataset, partition)})")
                if not cur.fetchone()[0]:
                    # A partition the warehouse has no row of (its first load): COPY straight into
                    # the target, as Iceberg's first load appends; nothing to upsert or delete.
                    for table in tables:
                        self._copy(target, _as_target(dataset, partition, table))
                else:
                    cur.execute(f"DROP TABLE IF EXISTS {STAGING}")
                    cur.execute(f"CREATE TEMP TABLE stg_load {d.staging_ddl(dataset)}")
                    for table in tables:
                        self._copy(STAGING, table)
                    cur.execute(d.upsert(dataset, partition, target, STAGING))
                    cur.execute(d.delete_missing(dataset, partition, target, STAGING))
                    cur.execute(f"DROP TABLE {STAGING}")
            with stages.timed("write.symbols"):
                if symbols - self._known_symbols:  # most partitions bring no symbol this load has not seen
                    self.add_symbols(dataset, partition)
            with stages.timed("write.ledger"):
                self.write_ledger(dataset, partition, objects, sums)
        self._known_symbols |= symbols  # committed: in dim_symbol now
        return sum(n for n, _, _ in sums)

    def units(self, dataset: Dataset, todo: list[tuple[str, list[LakeObject]]]) -> list[Unit]:
        """A month-partitioned target: each month it has no child for is one unit (loaded
        index-less, then indexed once); partitions of existing months load one by one."""
        if not dataset.month_partitioned:
            return super().units(dataset, todo)
        days = [dataset.partition_columns(partition)["date"][0] for partition, _ in todo]
        existing = self._months_with_child(dataset, days)
        months: dict[str, Unit] = {}
        units: list[Unit] = []
        for (partition, objects), day in zip(todo, days, strict=True):
            if day[:7] in existing:
                units.append([(partition, objects)])
            else:
                months.setdefault(day[:7], []).append((partition, objects))
        return [*months.values(), *units]

    def replace_unit(self, dataset: Dataset, unit: Unit, s3, stages: Stages = NO_STAGES) -> int:
        if not dataset.month_partitioned:
            return super().replace_unit(dataset, unit, s3, stages)
        day = dataset.partition_columns(unit[0][0])["date"][0]
        with self.transaction():
            self._cur.execute("SELECT warehouse.begin_month(%s, CAST(%s AS date))", (dataset.target, day))
            child = self._cur.fetchone()[0]
            if child is not None:
                rows, symbols = self._load_new_month(dataset, unit, child, day, s3, stages)
        if child is None:  # the month exists (or another load made it meanwhile): into the parent
            return super().replace_unit(dataset, unit, s3, stages)
        self._known_symbols |= symbols  # committed: in dim_symbol now
        return rows

    def _months_with_child(self, dataset: Dataset, days: list[str]) -> set[str]:
        """The months (YYYY-MM) of `days` the target has a child table for (named by the SQL's
        warehouse.month_child, the one place that spells a child's name)."""
        months = sorted({day[:7] + "-01" for day in days})
        rows = self.query("SELECT m FROM unnest(CAST(? AS date[])) AS m "
                          "WHERE to_regclass('warehouse.' || warehouse.month_child(?, m)) IS NOT NULL",
                          (months, dataset.target))
        return {str(row[0])[:7] for row in rows}

    def _load_new_month(self, dataset: Dataset, unit: Unit, child: str, day: str, s3,
                        stages: Stages) -> tuple[int, set[str]]:
        """Inside the unit's transaction, after begin_month made `child`: COPY every partition into
        it, add the new symbols, build the indexes and attach it, then the ledger; the rows and
        the symbols it brought."""
        from concurrent.futures import ThreadPoolExecutor

        cur, symbols = self._cur, set[str]()
        keys = []  # the key columns of every object: their checksums in one query at the end

        def read(partition: str, objects: list[LakeObject]) -> list[pa.Table]:
            return [read_object(s3, obj, dataset) for obj in objects]

        # The next partition is read while this one's COPY runs: the client's read and decode and
        # the server's insert then overlap instead of taking turns.
        with ThreadPoolExecutor(1, thread_name_prefix="tickerlake-read") as reader:
            pending = reader.submit(read, *unit[0])
            for i, (partition, _) in enumerate(unit):
                with stages.timed("read"):  # the wait for it, once the first is in
                    tables = pending.result()
                if i + 1 < len(unit):
                    pending = reader.submit(read, *unit[i + 1])
                symbols |= {v for t in tables if "symbol" in t.column_names
                            for v in pc.unique(t.column("symbol")).to_pylist() if v is not None}
                with stages.timed("write"), stages.timed("write.copy"):
                    for table in tables:
                        self._copy(self.table(child), _as_target(dataset, partition, table), freeze=True)
                keys += [t.select([c.lake for c in dataset.file_keys]) for t in tables]
        with stages.timed("checksum"):
            each = iter(checksums.lake_checksums(dataset, keys))
        sums_by_partition = [(partition, objects, [next(each) for _ in objects]) for partition, objects in unit]
        rows = sum(n for _, _, partition_sums in sums_by_partition for n, _, _ in partition_sums)
        with stages.timed("write"):
            with stages.timed("write.symbols"):
                if symbols - self._known_symbols:
                    # before the attach, whose lock on the parent is held to commit: a second
                    # load waiting here for the same new symbols then holds no lock we need
                    d = self.dialect
                    self.execute(d.upsert_symbols(self.table("dim_symbol"),
                                                  f"SELECT DISTINCT {d.ident('symbol')} FROM {self.table(child)} "
                                                  f"WHERE {d.ident('symbol')} IS NOT NULL ORDER BY 1"))
            with stages.timed("write.index"):
                cur.execute("SELECT warehouse.attach_month(%s, CAST(%s AS date))", (dataset.target, day))
                cur.fetchall()
            with stages.timed("write.ledger"):
                self.write_ledgers(dataset, sums_by_partition)
        return rows, symbols

    def close(self) -> None:
        self.conn.close()


def copy_arrow(cursor, table: str, data: pa.Table, *, freeze: bool = False) -> None:
    """Binary COPY of an Arrow table into `table` (qualified) on a psycopg cursor, in its open
    transaction. pgpq encodes the rows in Rust at ~0.3 µs a row; the ADBC driver's encoder took
    ~2.5 µs of the same two cores (docs/warehouse.md). `freeze`: the table was created in this
    transaction; its rows are written frozen and its pages all-visible, so neither the first
    reader (hint bits) nor autovacuum rewrites them after the load."""
    import pgpq

    if not data.num_rows:
        return
    encoder = pgpq.ArrowToPostgresBinaryEncoder(data.schema)
    columns = ", ".join(PostgresWarehouse.dialect.ident(c) for c in data.column_names)
    options = "FORMAT BINARY, FREEZE" if freeze else "FORMAT BINARY"
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN ({options})") as copy:
        copy.write(encoder.write_header())
        for batch in data.to_batches():
            copy.write(encoder.write_batch(batch))
        copy.write(encoder.finish())
