"""Every dataset is declared once (tickerlake.core.datasets); everything spelled elsewhere agrees.

- the SQL DDL in sql/postgres and sql/snowflake: every warehouse table's columns, types and primary
  key equal what the declarations derive (parsed from the files, so any drift fails here);
- the Spark DDL: the Iceberg tables the jobs create have exactly the declared columns and types;
- the Arrow schemas: what the sources return conforms to the raw OHLCV declaration.
"""
from __future__ import annotations

import re
from collections import defaultdict

import pytest

from tickerlake.core import datasets as declared
from tickerlake.core.datasets import SPARK_TYPES, Kind
from tickerlake.core.names import Table
from tickerlake.core.settings import REPO_ROOT
from tickerlake.warehouse.datasets import PARTITION_COLUMN, Datasets
from tickerlake.warehouse.postgres import PostgresDialect
from tickerlake.warehouse.snowflake import SnowflakeDialect

SQL_FILES = {"postgres": (REPO_ROOT / "sql/postgres/010_dim_symbol.sql", REPO_ROOT / "sql/postgres/020_tables.sql"),
             "snowflake": (REPO_ROOT / "sql/snowflake/010_tables.sql",)}
DIALECTS = {"postgres": PostgresDialect(), "snowflake": SnowflakeDialect()}


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in body:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def parse_tables(text: str) -> dict[str, dict]:
    """table -> {"columns": {name: type text}, "key": [names], "partitioned": bool} from CREATE
    TABLE statements."""
    text = re.sub(r"--[^\n]*", "", text)
    tables = {}
    for match in re.finditer(r"CREATE TABLE IF NOT EXISTS (?:\w+\.)?(\w+)\s*\((.*?)\)(\s*PARTITION BY [^;]*)?;",
                             text, re.S | re.I):
        columns, key = {}, []
        for item in _split_top_level(match.group(2)):
            if item.upper().startswith("PRIMARY KEY"):
                key = [k.strip().lower() for k in item[item.index("(") + 1:item.rindex(")")].split(",")]
                continue
            name, rest = item.split(None, 1)
            columns[name.lower()] = rest
            if "PRIMARY KEY" in rest.upper():
                key = [name.lower()]
        tables[match.group(1).lower()] = {"columns": columns, "key": key, "partitioned": bool(match.group(3))}
    return tables


def _type_of(rest: str, dialect) -> Kind:
    """The declared kind whose backend type the column's SQL starts with (longest match first)."""
    for kind, sql_type in sorted(dialect.types.items(), key=lambda kv: -len(kv[1])):
        if rest.lower().startswith(sql_type.lower()):
            return kind
    raise AssertionError(f"unknown SQL type in {rest!r}")


def expected_tables(backend: str) -> dict[str, dict]:
    """What the declarations say each warehouse table holds: name -> {"columns": {col: kind}, "key",
    "partitioned"}. Postgres partitions the bar tables by month, so their keys include `date`."""
    tables: dict[str, dict] = defaultdict(lambda: {"columns": {}, "key": None, "partitioned": False})
    for dataset in Datasets.all():
        table = tables[dataset.target]
        for column in dataset.columns:
            table["columns"][column.name] = column.kind
        for column, (_, kind) in dataset.constants.items():
            table["columns"][column] = kind
        for hive_key in dataset.partition_by:
            column, kind = PARTITION_COLUMN[hive_key]
            table["columns"][column] = kind
        key = list(dataset.unique_keys if backend == "postgres" else dataset.keys)
        assert table["key"] in (None, key), f"{dataset.target}: datasets disagree on the key"
        table["key"] = key
        table["partitioned"] = dataset.month_partitioned and backend == "postgres"
    for spec in (declared.LOAD_LEDGER, declared.LOAD_STATE, declared.DIM_SYMBOL):
        tables[spec.name] = {"columns": {c.name: c.kind for c in spec.columns}, "key": list(spec.keys),
                             "partitioned": False}
    return dict(tables)


@pytest.mark.parametrize("backend", ["postgres", "snowflake"])
def test_the_sql_ddl_equals_the_dataset_declarations(backend):
    dialect = DIALECTS[backend]
    parsed: dict[str, dict] = {}
    for path in SQL_FILES[backend]:
        parsed.update(parse_tables(path.read_text()))
    expected = expected_tables(backend)
    assert set(parsed) == set(expected)
    for table, spec in expected.items():
        found = parsed[table]
        assert set(found["columns"]) == set(spec["columns"]), \
            f"{backend} {table}: columns differ: {set(found['columns']) ^ set(spec['columns'])}"
        kinds = {name: _type_of(rest, dialect) for name, rest in found["columns"].items()}
        # integer and bigint are both NUMBER(38, 0) in Snowflake: compare what the backend can tell
        wanted = {name: dialect.types[kind] for name, kind in spec["columns"].items()}
        assert {n: dialect.types[k] for n, k in kinds.items()} == wanted, f"{backend} {table}: types differ"
        assert found["key"] == spec["key"], f"{backend} {table}: primary key differs"
        assert found["partitioned"] == spec["partitioned"], f"{backend} {table}: partitioning differs"


def test_the_ddl_check_catches_a_drifted_column():
    """The check above can fail: a renamed column or a changed type is seen."""
    text = (REPO_ROOT / "sql/postgres/020_tables.sql").read_text()
    drifted = parse_tables(text.replace("trades        bigint", "trade_count   bigint"))
    assert "trades" not in drifted["bars_intraday"]["columns"]
    retyped = parse_tables(text.replace("price            double precision", "price            text"))
    assert _type_of(retyped["ticks"]["columns"]["price"], PostgresDialect()) is Kind.TEXT


def test_every_declaration_is_consistent():
    for spec in declared.ALL_DATASETS:
        assert set(spec.keys) <= set(spec.column_names), spec.name
        assert spec.arrow_schema().names == spec.column_names
        for table in spec.tables:
            assert declared.dataset_of(table) is spec


def test_sources_return_frames_conforming_to_the_raw_declaration():
    from datetime import date

    import pyarrow as pa

    from ingestion.sources.synthetic import SyntheticMarket
    from tickerlake.core.datasets import BarInterval

    frame = SyntheticMarket().bars(["AAPL"], date(2025, 3, 3), date(2025, 3, 8), BarInterval.DAILY)
    table = pa.Table.from_pandas(frame, schema=declared.OHLCV.arrow_schema(), preserve_index=False)
    assert table.schema.equals(declared.OHLCV.arrow_schema())
    assert table.num_rows == 5


@pytest.mark.spark
def test_the_iceberg_tables_the_jobs_create_have_the_declared_schema(spark, settings):
    from spark_jobs import stream_ticks, transform_bars

    transform_bars.ensure_tables(spark, "1d")
    stream_ticks.ensure_tables(spark, settings)
    for table in (Table.BARS_1D, Table.ANOMALIES, Table.TICKS, Table.LIVE_BARS_1M, Table.LIVE_BARS_5M):
        spec = declared.dataset_of(table)
        schema = spark.table(f"{settings.iceberg.catalog}.{table}").schema
        assert [(f.name, f.dataType.simpleString().upper()) for f in schema] == \
            [(c.name, SPARK_TYPES[c.kind]) for c in spec.columns], table
