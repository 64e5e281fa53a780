"""The warehouse load, run against every backend through the same tests (as dlt's are):

- postgres: the test stack's real Postgres, as the loader role;
- fakesnow: a FAKE Snowflake (fakesnow, over DuckDB): the real Snowflake code path (stage, PUT,
  COPY INTO, MERGE), since no Snowflake account is reachable from here;
- snowflake: a real account, only when TICKERLAKE_SNOWFLAKE_ACCOUNT is set (skipped otherwise).

Each test writes its own Parquet into the test stack's lake, under its own prefix and dataset
name, with dates no other test uses, so the shared warehouse tables never mix tests (the real
datasets read Iceberg tables' snapshots; one test checks that listing).
"""
from __future__ import annotations

import dataclasses
import io
import itertools
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tickerlake.warehouse.base import ConsistencyError, check_dataset, load_dataset, raise_on_mismatch
from tickerlake.warehouse.datasets import ARROW, Datasets, Kind, LakeObject, list_partitions

_years = itertools.count(1901)  # each test's own dates, far from any real data


@pytest.fixture(scope="module", params=["postgres", "fakesnow", "snowflake"])
def warehouse(request, settings):
    if request.param == "postgres":
        from tickerlake.warehouse.postgres import PostgresWarehouse

        wh = PostgresWarehouse(settings.pg)
        patch = None
    elif request.param == "fakesnow":
        import fakesnow
        import snowflake.connector

        from tickerlake.core.settings import SnowflakeSettings
        from tickerlake.warehouse.snowflake import SnowflakeWarehouse

        patch = fakesnow.patch()
        patch.__enter__()
        sf = SnowflakeSettings(account="fakesnow", user="fakesnow")
        wh = SnowflakeWarehouse(sf, connect=lambda: snowflake.connector.connect(database=sf.database))
    else:
        if not settings.snowflake.configured:
            pytest.skip("no Snowflake account configured (set TICKERLAKE_SNOWFLAKE_ACCOUNT and friends "
                        "to run these tests against a real account)")
        from tickerlake.warehouse.snowflake import SnowflakeWarehouse

        wh, patch = SnowflakeWarehouse(settings.snowflake), None
    wh.ensure_schema()
    yield wh
    wh.close()
    if patch is not None:
        patch.__exit__(None, None, None)


def _dataset(base, **changes):
    """A copy of a real dataset under a test-only prefix and name (its own ledger entries), read as
    plain Parquet objects under that prefix: the load's mechanics (ledger, reload, check) are the
    same for both kinds of dataset; the Iceberg listing has its own test below."""
    tag = uuid.uuid4().hex[:8]
    return dataclasses.replace(base, name=f"test_{base.name}_{tag}", prefix=f"wh-tests/{tag}/{base.prefix}",
                               iceberg=None, **changes)


def _bars(dataset, day: date, symbols: list[str], close: float = 100.0) -> pa.Table:
    """Daily bars as the transform writes them (every column of the dataset, typed)."""
    n = len(symbols)
    values = {}
    for column in dataset.columns:
        if column.lake == "symbol":
            values[column.lake] = symbols
        elif column.lake == "timestamp":
            ts = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
            values[column.lake] = [ts] * n
        elif column.kind is Kind.DOUBLE:
            values[column.lake] = [close + i for i in range(n)]
        elif column.kind is Kind.BIGINT:
            values[column.lake] = [1000 + i for i in range(n)]
        elif column.kind is Kind.BOOL:
            values[column.lake] = [i % 2 == 0 for i in range(n)]
        else:
            values[column.lake] = ["synthetic"] * n
    return pa.table({c.lake: pa.array(values[c.lake], ARROW[c.kind]) for c in dataset.columns})


def _put(s3, dataset, partition: str, name: str, table: pa.Table) -> str:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    key = f"{dataset.prefix}{partition}/{name}"
    s3.put_object(Bucket=dataset.bucket.value, Key=key, Body=sink.getvalue())
    return key


def _lake_with_days(s3, days: int = 3):
    """A bars_daily dataset with `days` partitions of two objects each (2 + 3 symbols)."""
    dataset = _dataset(Datasets.BARS_DAILY.value)
    year = next(_years)
    dates = [date(year, 1, 2) + timedelta(days=i) for i in range(days)]
    for day in dates:
        _put(s3, dataset, f"date={day}", "part-0.parquet", _bars(dataset, day, ["AAA", "BBB"]))
        _put(s3, dataset, f"date={day}", "part-1.parquet", _bars(dataset, day, ["CCC", "DDD", "EEE"]))
    return dataset, dates


def _state(warehouse, dataset, s3):
    checks = check_dataset(warehouse, dataset, s3)
    return {c.partition: c.warehouse for c in checks}, warehouse.ledger(dataset)


def test_loading_twice_loads_nothing_the_second_time(warehouse, s3):
    dataset, dates = _lake_with_days(s3)
    first = load_dataset(warehouse, dataset, s3, workers=2)  # side by side where the backend can
    assert (len(first.partitions_loaded), first.objects_loaded, first.rows_loaded) == (3, 6, 15)
    before = _state(warehouse, dataset, s3)
    raise_on_mismatch(check_dataset(warehouse, dataset, s3))
    second = load_dataset(warehouse, dataset, s3)
    assert (second.partitions_loaded, second.rows_loaded, second.partitions_unchanged) == ([], 0, 3)
    assert _state(warehouse, dataset, s3) == before
    assert all(count == 5 for count, _, _ in before[0].values())


def test_a_replaced_lake_object_is_reloaded_once_and_replaces_its_rows(warehouse, s3):
    dataset, dates = _lake_with_days(s3)
    load_dataset(warehouse, dataset, s3)
    changed = dates[1]
    # The transform reran: the object now has one symbol fewer and new prices.
    _put(s3, dataset, f"date={changed}", "part-1.parquet", _bars(dataset, changed, ["CCC", "DDD"], close=7.0))
    report = load_dataset(warehouse, dataset, s3)
    assert report.partitions_loaded == [f"date={changed}"]
    raise_on_mismatch(check_dataset(warehouse, dataset, s3))
    rows = warehouse.query(f"SELECT symbol, close FROM {warehouse.table('bars_daily')} "
                           f"WHERE date = CAST('{changed}' AS DATE) ORDER BY symbol")
    assert rows == [("AAA", 100.0), ("BBB", 101.0), ("CCC", 7.0), ("DDD", 8.0)]
    assert load_dataset(warehouse, dataset, s3).partitions_loaded == []


def test_a_partition_gone_from_the_lake_is_gone_from_the_warehouse(warehouse, s3):
    dataset, dates = _lake_with_days(s3)
    load_dataset(warehouse, dataset, s3)
    gone = f"date={dates[0]}"
    for name in ("part-0.parquet", "part-1.parquet"):
        s3.delete_object(Bucket=dataset.bucket.value, Key=f"{dataset.prefix}{gone}/{name}")
    report = load_dataset(warehouse, dataset, s3)
    assert report.partitions_dropped == [gone]
    assert gone not in warehouse.ledger(dataset)
    assert warehouse.query(f"SELECT COUNT(*) FROM {warehouse.table('bars_daily')} "
                           f"WHERE date = CAST('{dates[0]}' AS DATE)")[0][0] == 0


def test_a_row_deleted_behind_the_loads_back_fails_the_check_naming_its_partition(warehouse, s3):
    dataset, dates = _lake_with_days(s3)
    load_dataset(warehouse, dataset, s3)
    deleted = warehouse.execute(f"DELETE FROM {warehouse.table('bars_daily')} "
                                f"WHERE date = CAST(? AS DATE) AND symbol = ?", (str(dates[2]), "CCC"))
    assert deleted == 1
    with pytest.raises(ConsistencyError, match=rf"{dataset.name} date={dates[2]}: lake 5 rows .* warehouse 4 rows"):
        raise_on_mismatch(check_dataset(warehouse, dataset, s3))
    # The way out the message gives: reload, and the check passes again.
    load_dataset(warehouse, dataset, s3, reload=True)
    raise_on_mismatch(check_dataset(warehouse, dataset, s3))


def test_a_lost_ledger_reloads_without_doubling_rows(warehouse, s3):
    """The warehouse's own load history cannot double rows either: the upsert is keyed."""
    dataset, dates = _lake_with_days(s3)
    load_dataset(warehouse, dataset, s3)
    before = _state(warehouse, dataset, s3)[0]
    assert warehouse.forget(dataset) == 6  # one ledger entry per object
    assert load_dataset(warehouse, dataset, s3).rows_loaded == 15
    assert _state(warehouse, dataset, s3)[0] == before


def test_ticks_load_only_the_files_the_iceberg_snapshot_lists(warehouse, s3, spark, settings):
    """A data file no snapshot committed (a killed write leaves one behind) is not data."""
    from tickerlake.core import datasets as declared
    from tickerlake.core.iceberg import create_iceberg_table
    from tickerlake.core.names import Namespace

    tag = uuid.uuid4().hex[:8]
    table = f"wh_ticks_{tag}"
    name = create_iceberg_table(spark, Namespace.REALTIME, table, declared.TICKS.spark_ddl(),
                                partitioned_by=declared.TICKS.spark_partitioning())
    dataset = dataclasses.replace(Datasets.TICKS.value, name=f"test_ticks_{tag}",
                                  prefix=f"iceberg/{table}/data/", iceberg=f"realtime.{table}")
    day = date(next(_years), 3, 4)
    spark.sql(f"INSERT INTO {name} VALUES " + ", ".join(
        f"('e{i}', TIMESTAMP'{day} 15:00:0{i}', 'AAA', 10.0, 1, 9.9, 10.1, 'test', DATE'{day}', 0, {i}, 15)"
        for i in range(4)))
    part = f"date={day}/hour=15"
    orphan = pa.table({"event_id": ["orphan"]})
    _put(s3, dataset, part, "00000-orphan.parquet", orphan)
    listed = list_partitions(s3, dataset)
    assert list(listed) == [part] and not any("orphan" in o.key for o in listed[part])
    assert load_dataset(warehouse, dataset, s3).rows_loaded == 4
    raise_on_mismatch(check_dataset(warehouse, dataset, s3))
    ids = warehouse.query(f"SELECT event_id FROM {warehouse.table('ticks')} "
                          "WHERE date = CAST(? AS DATE) ORDER BY event_id", (str(day),))
    assert [r[0] for r in ids] == ["e0", "e1", "e2", "e3"]
    again = load_dataset(warehouse, dataset, s3)  # nothing new: the snapshot alone says so
    assert (again.up_to_date, again.partitions_loaded) == (True, [])
    assert again.snapshot_id == warehouse.loaded_snapshot(dataset)
    # A new commit touching one new partition: only that one is loaded, and checked.
    spark.sql(f"INSERT INTO {name} VALUES ('e9', TIMESTAMP'{day} 16:00:00', 'AAA', 11.0, 1, 10.9, 11.1, "
              f"'test', DATE'{day}', 0, 9, 16)")
    later = load_dataset(warehouse, dataset, s3)
    assert (later.up_to_date, later.partitions_unchanged) == (False, 1)
    assert later.partitions_loaded == [f"date={day}/hour=16"]
    assert [c.partition for c in check_dataset(warehouse, dataset, s3, full=False)] == [f"date={day}/hour=16"]
    raise_on_mismatch(check_dataset(warehouse, dataset, s3))


def test_the_check_covers_what_was_loaded_since_the_last_one_and_on_demand_everything(warehouse, s3):
    dataset, dates = _lake_with_days(s3)
    load_dataset(warehouse, dataset, s3)
    first = check_dataset(warehouse, dataset, s3, full=False)
    assert [c.partition for c in first] == [f"date={d}" for d in dates] and all(c.ok for c in first)
    assert check_dataset(warehouse, dataset, s3, full=False) == []  # nothing loaded since
    # A row deleted behind the load's back in a checked partition: the full check finds it.
    warehouse.execute(f"DELETE FROM {warehouse.table('bars_daily')} WHERE date = CAST(? AS DATE) AND symbol = ?",
                      (str(dates[0]), "AAA"))
    with pytest.raises(ConsistencyError, match=rf"date={dates[0]}: lake 5 rows .* warehouse 4 rows"):
        raise_on_mismatch(check_dataset(warehouse, dataset, s3, full=True))
    # A reloaded partition is checked again on the next incremental check, and only it.
    _put(s3, dataset, f"date={dates[2]}", "part-1.parquet", _bars(dataset, dates[2], ["CCC"], close=3.0))
    assert load_dataset(warehouse, dataset, s3).partitions_loaded == [f"date={dates[2]}"]
    again = check_dataset(warehouse, dataset, s3, full=False)
    assert [(c.partition, c.lake[0], c.ok) for c in again] == [(f"date={dates[2]}", 3, True)]


def test_the_key_checksum_is_the_md5_slices_the_docs_describe():
    """The lake side's SQL (DuckDB) against the definition computed here by hand."""
    import hashlib

    from tickerlake.warehouse.checksums import lake_checksum

    dataset = Datasets.BARS_DAILY.value
    ts = [datetime(2024, 1, 2, 14, 30, tzinfo=UTC), datetime(1990, 6, 1, 13, 30, 0, 250, tzinfo=UTC)]
    table = pa.table({"symbol": ["ABC", "SAP.DE"], "timestamp": pa.array(ts, pa.timestamp("us", "UTC"))})
    expected = [0, 0, 0]
    for symbol, t in zip(["ABC", "SAP.DE"], ts, strict=True):
        micros = (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        digest = hashlib.md5(f"{symbol}|{micros}".encode()).hexdigest()
        expected = [expected[0] + 1, expected[1] + int(digest[:6], 16), expected[2] + int(digest[6:12], 16)]
    assert lake_checksum(dataset, table) == tuple(expected)


def test_placeholders_are_the_interfaces_business_not_the_callers(warehouse, s3):
    """The same `?` query runs on every backend."""
    dataset, dates = _lake_with_days(s3, days=1)
    load_dataset(warehouse, dataset, s3)
    rows = warehouse.query(f"SELECT COUNT(*) FROM {warehouse.table('bars_daily')} "
                           "WHERE date = CAST(? AS DATE) AND symbol IN (?, ?)", (str(dates[0]), "AAA", "EEE"))
    assert rows[0][0] == 2
    assert warehouse.forget(dataset, [f"date={dates[0]}"]) == 2


def _load_side_by_side(settings, s3, datasets) -> list[Exception]:
    """Each dataset loaded by its own thread on its own Postgres connection, all released at once
    (as mapped loads run under a real scheduler); the errors they raised."""
    import threading

    from tickerlake.warehouse.postgres import PostgresWarehouse

    barrier, errors = threading.Barrier(len(datasets)), []

    def load(dataset):
        with PostgresWarehouse(settings.pg) as own:
            barrier.wait()
            try:
                load_dataset(own, dataset, s3)
            except Exception as exc:  # noqa: BLE001 - collected and asserted on by the caller
                errors.append(exc)

    threads = [threading.Thread(target=load, args=(d,)) for d in datasets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_parallel_loads_adding_the_same_new_symbols_never_collide(warehouse, s3, settings):
    """Mapped loads run side by side under a real scheduler (not one by one as in `dags test`):
    four loads, each on its own connection, add the same brand-new symbols to dim_symbol at once."""
    from tickerlake.warehouse.base import Backend

    if warehouse.backend is not Backend.POSTGRES:
        pytest.skip("concurrent connections: fakesnow shares one in-process DuckDB; Snowflake serialises "
                    "MERGEs on a table by its lock")
    symbols = [f"Z{uuid.uuid4().hex[:6].upper()}" for _ in range(3)]
    datasets = []
    for _ in range(4):
        dataset = _dataset(Datasets.BARS_DAILY.value)
        day = date(next(_years), 1, 2)
        _put(s3, dataset, f"date={day}", "part-0.parquet", _bars(dataset, day, symbols))
        datasets.append(dataset)
    assert _load_side_by_side(settings, s3, datasets) == []
    rows = warehouse.query(f"SELECT symbol, COUNT(*) FROM {warehouse.table('dim_symbol')} "
                           f"WHERE symbol IN (?, ?, ?) GROUP BY symbol ORDER BY symbol", tuple(symbols))
    assert rows == [(s, 1) for s in sorted(symbols)]


def test_the_backend_is_chosen_in_one_place_from_one_setting(settings):
    from tickerlake.core.errors import ConfigError
    from tickerlake.core.settings import WarehouseBackend, WarehouseSettings
    from tickerlake.warehouse import choose_backend
    from tickerlake.warehouse.base import Backend

    def pick(backend, connect=None):
        chosen = settings.model_copy(update={"warehouse": WarehouseSettings(backend=backend)})
        return choose_backend(chosen, connect)[0]

    assert pick(WarehouseBackend.AUTO) is Backend.POSTGRES  # no Snowflake configured here
    assert pick(WarehouseBackend.AUTO, connect=object) is Backend.SNOWFLAKE
    assert pick(WarehouseBackend.POSTGRES, connect=object) is Backend.POSTGRES
    with pytest.raises(ConfigError, match="^TICKERLAKE_WAREHOUSE_BACKEND=snowflake but neither"):
        pick(WarehouseBackend.SNOWFLAKE)


def test_every_dataset_column_exists_in_its_warehouse_table(warehouse):
    for dataset in Datasets.all():
        columns = ", ".join(warehouse.dialect.ident(c) for c in dataset.target_columns())
        warehouse.query(f"SELECT {columns} FROM {warehouse.table(dataset.target)} WHERE 1 = 0")


def test_the_analyst_views_answer(warehouse):
    from tickerlake.warehouse.pipeline import VIEWS

    for view in VIEWS:
        columns, _ = warehouse.query_table(f"SELECT * FROM {warehouse.table(view)} LIMIT 1")
        assert columns


def test_analyst_reads_views_and_cannot_write_postgres(settings):
    import psycopg

    from tickerlake.core.clients import pg_connect
    from tickerlake.warehouse.pipeline import VIEWS

    with pg_connect(settings.pg, as_analyst=True) as conn:
        for view in VIEWS:
            conn.execute(f"SELECT * FROM warehouse.{view} LIMIT 1").fetchall()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM warehouse.bars_daily")
        conn.rollback()
        conn.execute("SET default_transaction_read_only = off")  # even then: no privilege
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO warehouse.dim_symbol (symbol) VALUES ('NOPE')")


def test_the_loader_writes_but_cannot_change_the_schema_postgres(settings):
    import psycopg

    with psycopg.connect(settings.pg.loader_uri().replace("?connect_timeout=5", "")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE warehouse.bars_daily")


def _pg_only(warehouse):
    from tickerlake.warehouse.base import Backend

    if warehouse.backend is not Backend.POSTGRES:
        pytest.skip("month partitions are Postgres's: Snowflake has no table partitions to create")


def test_a_month_new_to_the_warehouse_loads_as_one_unit_into_an_attached_indexed_child(warehouse, s3):
    _pg_only(warehouse)
    dataset, dates = _lake_with_days(s3)  # three days of January of a year of its own
    todo = list(list_partitions(s3, dataset).items())
    assert [len(unit) for unit in warehouse.units(dataset, todo)] == [3]  # the whole month, together
    load_dataset(warehouse, dataset, s3)
    child = f"bars_daily_y{dates[0].year}m01"
    parent, owner = warehouse.query(
        "SELECT CAST(i.inhparent AS regclass)::text, pg_get_userbyid(c.relowner) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhrelid = CAST(? AS regclass)", (f"warehouse.{child}",))[0]
    assert parent == "warehouse.bars_daily" and owner != "loader"  # attached; the owner's, not the loader's
    indexes = {row[0].split(" USING ")[1] for row in warehouse.query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'warehouse' AND tablename = ?", (child,))}
    assert indexes == {"btree (symbol, ts, date)", "btree (date)"}
    # A later day of the same month goes through the parent, on its own, and upserts by key.
    later = dates[-1] + timedelta(days=1)
    _put(s3, dataset, f"date={later}", "part-0.parquet", _bars(dataset, later, ["AAA"]))
    todo = [(p, o) for p, o in list_partitions(s3, dataset).items() if p == f"date={later}"]
    assert [len(unit) for unit in warehouse.units(dataset, todo)] == [1]
    assert load_dataset(warehouse, dataset, s3).partitions_loaded == [f"date={later}"]
    raise_on_mismatch(check_dataset(warehouse, dataset, s3))
    assert warehouse.query(f"SELECT COUNT(*) FROM warehouse.{child}") == [(16,)]


def test_two_loads_bringing_the_same_new_month_side_by_side_both_land(warehouse, s3, settings):
    """Both find no child for March; one creates it, the other waits in begin_month and then
    loads through the parent (or finds the month made before it starts)."""
    _pg_only(warehouse)
    year = next(_years)
    datasets = []
    for k in range(2):
        dataset = _dataset(Datasets.BARS_DAILY.value)
        day = date(year, 3, 2 + k)
        _put(s3, dataset, f"date={day}", "part-0.parquet", _bars(dataset, day, [f"M{k}A", f"M{k}B"]))
        datasets.append(dataset)
    assert _load_side_by_side(settings, s3, datasets) == []
    for dataset in datasets:
        raise_on_mismatch(check_dataset(warehouse, dataset, s3))
    assert warehouse.query(f"SELECT COUNT(*) FROM warehouse.bars_daily_y{year}m03") == [(4,)]


def test_the_loader_can_make_months_only_of_the_partitioned_tables_postgres(settings):
    import psycopg

    with psycopg.connect(settings.pg.loader_uri().replace("?connect_timeout=5", "")) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="not a table partitioned by month"):
            conn.execute("SELECT warehouse.begin_month('load_ledger', DATE '2026-01-02')")
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="not a detached month"):
            conn.execute("SELECT warehouse.attach_month('bars_daily', DATE '1800-01-02')")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE warehouse.bars_daily_y1800m01 (LIKE warehouse.bars_daily)")


def test_a_warehouse_from_before_the_month_partitions_is_migrated_and_reloads_postgres(settings):
    """`python -m minio_init --only warehouse` on a warehouse whose bars_daily is a plain table:
    the table goes (the lake is the system of record), with its loads, and comes back partitioned."""
    from psycopg import sql

    from minio_init.warehouse import apply_sql
    from tickerlake.core.clients import pg_connect

    scratch = f"migration_{uuid.uuid4().hex[:8]}"
    with pg_connect(settings.pg, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    pg = settings.pg.model_copy(update={"database": scratch})
    try:
        apply_sql(pg)
        with pg_connect(pg) as conn:  # as an earlier version left it
            conn.execute("DROP TABLE warehouse.bars_daily CASCADE")
            conn.execute("CREATE TABLE warehouse.bars_daily (symbol text, ts timestamptz, date date, "
                         "PRIMARY KEY (symbol, ts))")
            for dataset, target in (("bars_daily", "bars_daily"), ("ticks", "ticks")):
                conn.execute("INSERT INTO warehouse.load_ledger (dataset, lake_partition, bucket, object_key, etag, "
                             "row_count, target) VALUES (%s, 'date=2026-01-02', 'processed', %s, 'e', 1, %s)",
                             (dataset, f"{dataset}/x.parquet", target))
                conn.execute("INSERT INTO warehouse.load_state (dataset, snapshot_id) VALUES (%s, 1)", (dataset,))
        apply_sql(pg)
        with pg_connect(pg) as conn:
            assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'warehouse.bars_daily'::regclass"
                                ).fetchone() == ("p",)
            assert conn.execute("SELECT dataset FROM warehouse.load_ledger").fetchall() == [("ticks",)]
            assert conn.execute("SELECT dataset FROM warehouse.load_state").fetchall() == [("ticks",)]
            conn.execute("SELECT * FROM warehouse.v_indicator_snapshot LIMIT 1")  # the views came back
        apply_sql(pg)  # and again: nothing left to migrate, nothing lost
        with pg_connect(pg) as conn:
            assert conn.execute("SELECT dataset FROM warehouse.load_ledger").fetchall() == [("ticks",)]
    finally:
        with pg_connect(settings.pg, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(scratch)))


def test_external_stage_copies_name_at_most_a_thousand_files_each():
    from tickerlake.core.settings import SnowflakeSettings, StageKind
    from tickerlake.warehouse.snowflake import copy_statements

    sf = SnowflakeSettings(account="a", user="u", stage=StageKind.EXTERNAL,
                           external_url="s3://acme-lake-{bucket}/", storage_integration="S3_INT")
    objects = [LakeObject("processed", f"iceberg/bars_1d/data/date=2026-01-02/part-{i:05d}.parquet", "e", 1)
               for i in range(2500)]
    statements = copy_statements(sf, Datasets.BARS_DAILY.value, "date=2026-01-02", objects)
    assert [s.count(".parquet'") for s in statements] == [1000, 1000, 500]
    prefix = "COPY INTO STG_BARS_DAILY FROM @TICKERLAKE_LAKE_PROCESSED/iceberg/bars_1d/data/date=2026-01-02/ "
    assert all(s.startswith(prefix) and "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE" in s
               and "USE_VECTORIZED_SCANNER = TRUE" in s for s in statements)


def test_the_backend_follows_the_deployment(settings):
    from tickerlake.warehouse import Backend, open_warehouse

    with open_warehouse(settings) as wh:  # no Snowflake configured here
        assert wh.backend is Backend.POSTGRES


def test_an_unknown_dataset_is_one_clear_line():
    with pytest.raises(ValueError, match="unknown dataset 'bars'; choose from bars_daily, "):
        Datasets.named("bars")

