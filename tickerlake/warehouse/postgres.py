"""The Postgres warehouse: binary COPY from Arrow (ADBC) into a staging table, then an upsert, all
in one transaction per partition. Connects as the loader role, which writes but owns nothing."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tickerlake.errors import TickerlakeError
from tickerlake.settings import PostgresSettings
from tickerlake.warehouse.base import Backend, Dialect, Warehouse
from tickerlake.warehouse.datasets import ARROW, Dataset, Kind, LakeObject, read_object

SCHEMA = "warehouse"
STAGING = "pg_temp.stg_load"


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

    def upsert(self, dataset: Dataset, partition: str, table: str, staging: str) -> str:
        columns = dataset.target_columns()
        names = ", ".join(self.ident(c) for c in columns)
        updates = ", ".join(f"{self.ident(c)} = EXCLUDED.{self.ident(c)}"
                            for c in columns if c not in dataset.keys)
        keys = ", ".join(self.ident(k) for k in dataset.keys)
        return (f"INSERT INTO {table} AS t ({names}) {self.mapped_select(dataset, partition, staging)} "
                f"ON CONFLICT ({keys}) DO UPDATE SET {updates} "
                f"WHERE {self.changed(dataset, 't', 'EXCLUDED')}")


class PostgresWarehouse(Warehouse):
    backend = Backend.POSTGRES
    dialect = PostgresDialect()

    def __init__(self, pg: PostgresSettings):
        import adbc_driver_postgresql.dbapi as adbc

        try:
            self.conn = adbc.connect(pg.loader_uri())
        except Exception as exc:  # the driver's message carries no password
            raise TickerlakeError(f"cannot connect to the Postgres warehouse at {pg.host}:{pg.port} "
                                  f"as {pg.loader_user}: {str(exc).splitlines()[0]}") from None
        self.label = f"postgres://{pg.host}:{pg.port}/{pg.database}"
        self._known_symbols: set[str] | None = None

    def table(self, name: str) -> str:
        return f"{SCHEMA}.{self.dialect.ident(name)}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            rows = cur.fetchall()
        self.conn.commit()
        return rows

    def query_table(self, sql: str) -> tuple[list[str], list[tuple]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description]
        self.conn.commit()
        return columns, rows

    def ensure_schema(self) -> None:
        missing = [t for t in ("bars_daily", "bars_intraday", "anomalies", "ticks", "load_ledger", "dim_symbol")
                   if not self.query("SELECT to_regclass($1) IS NOT NULL", (f"{SCHEMA}.{t}",))[0][0]]
        if missing:
            raise TickerlakeError(f"the Postgres warehouse has no table(s) {', '.join(missing)}: "
                                  "run `python -m minio_init --only warehouse` (make up does)")

    def ledger(self, dataset: Dataset) -> dict[str, dict[str, str]]:
        result: dict[str, dict[str, str]] = {}
        for partition, key, etag in self.query(
                f"SELECT lake_partition, object_key, etag FROM {self.table('load_ledger')} WHERE dataset = $1",
                (dataset.name,)):
            result.setdefault(partition, {})[key] = etag
        return result

    def replace_partition(self, dataset: Dataset, partition: str, objects: list[LakeObject], s3) -> int:
        tables = [read_object(s3, obj, dataset) for obj in objects]
        rows = [t.num_rows for t in tables]
        target, d = self.table(dataset.target), self.dialect
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {target} t WHERE {d.predicate(dataset, partition)})")
                if not cur.fetchone()[0]:
                    # A partition the warehouse has no row of (its first load): COPY straight into
                    # the target, as Iceberg's first load appends; nothing to upsert or delete.
                    for table in tables:
                        if table.num_rows:
                            cur.adbc_ingest(dataset.target, _as_target(dataset, partition, table),
                                            mode="append", db_schema_name=SCHEMA)
                else:
                    cur.execute(f"DROP TABLE IF EXISTS {STAGING}")
                    cur.execute(f"CREATE TEMP TABLE stg_load {d.staging_ddl(dataset)}")
                    for table in tables:
                        if table.num_rows:
                            cur.adbc_ingest("stg_load", table, mode="append", temporary=True)
                    cur.execute(d.upsert(dataset, partition, target, STAGING))
                    cur.execute(d.delete_missing(dataset, partition, target, STAGING))
                    cur.execute(f"DROP TABLE {STAGING}")
                self._add_symbols(cur, tables)
                self._write_ledger(cur, dataset, partition, objects, rows)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self._known_symbols = None  # the rolled-back inserts are not known any more
            raise
        return sum(rows)

    def _add_symbols(self, cur, tables: list[pa.Table]) -> None:
        """New symbols into dim_symbol (the ones this loader has not seen are looked up once)."""
        if self._known_symbols is None:
            cur.execute(f"SELECT symbol FROM {self.table('dim_symbol')}")
            self._known_symbols = {r[0] for r in cur.fetchall()}
        seen = set()
        for table in tables:
            seen.update(pc.unique(table.column("symbol")).to_pylist())
        new = sorted(s for s in seen - self._known_symbols if s is not None)
        if new:
            cur.adbc_ingest("dim_symbol", pa.table({"symbol": new}), mode="append", db_schema_name=SCHEMA)
            self._known_symbols.update(new)

    def _write_ledger(self, cur, dataset: Dataset, partition: str, objects: list[LakeObject],
                      rows: list[int]) -> None:
        cur.execute(f"DELETE FROM {self.table('load_ledger')} WHERE dataset = $1 AND lake_partition = $2",
                    (dataset.name, partition))
        if objects:
            cur.adbc_ingest("load_ledger", pa.table({
                "dataset": [dataset.name] * len(objects), "lake_partition": [partition] * len(objects),
                "bucket": [o.bucket for o in objects], "object_key": [o.key for o in objects],
                "etag": [o.etag for o in objects], "row_count": pa.array(rows, pa.int64()),
                "target": [dataset.target] * len(objects)}), mode="append", db_schema_name=SCHEMA)

    def drop_partition(self, dataset: Dataset, partition: str) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"DELETE FROM {self.table(dataset.target)} t "
                            f"WHERE {self.dialect.predicate(dataset, partition)}")
                self._write_ledger(cur, dataset, partition, [], [])
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def forget(self, dataset: Dataset, partitions: list[str] | None = None) -> int:
        with self.conn.cursor() as cur:
            if partitions is None:
                cur.execute(f"DELETE FROM {self.table('load_ledger')} WHERE dataset = $1", (dataset.name,))
            else:
                cur.execute(f"DELETE FROM {self.table('load_ledger')} WHERE dataset = $1 "
                            "AND lake_partition = ANY($2)", (dataset.name, partitions))
            count = cur.rowcount
        self.conn.commit()
        return count

    def close(self) -> None:
        self.conn.close()
