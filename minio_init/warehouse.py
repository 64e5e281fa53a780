"""Create the Postgres warehouse database, schemas and roles from the files in sql/postgres/."""
from __future__ import annotations

from pathlib import Path

from psycopg import sql

from tickerlake.core.clients import pg_connect
from tickerlake.core.settings import REPO_ROOT, PostgresSettings

SQL_DIR = REPO_ROOT / "sql" / "postgres"


def sql_files() -> list[Path]:
    """The warehouse's SQL files, applied in name order; each is idempotent."""
    return sorted(SQL_DIR.glob("*.sql"))


def ensure_databases(pg: PostgresSettings) -> dict[str, str]:
    """The warehouse database and Airflow's metadata database: name -> "created" | "exists"."""
    outcome = {}
    with pg_connect(pg, dbname="postgres", autocommit=True) as conn:
        for name in (pg.database, pg.airflow_database):
            if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                outcome[name] = "exists"
                continue
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            outcome[name] = "created"
    return outcome


def apply_sql(pg: PostgresSettings) -> list[str]:
    """Run every file in one transaction. Role names and passwords reach the SQL as session
    settings (tickerlake.*), so the files stay plain SQL and no secret is written into them."""
    applied = []
    with pg_connect(pg) as conn:
        for name, value in {
            "tickerlake.analyst_user": pg.analyst_user,
            "tickerlake.analyst_password": pg.analyst_password.get_secret_value(),
            "tickerlake.loader_user": pg.loader_user,
            "tickerlake.loader_password": pg.loader_password.get_secret_value(),
            "tickerlake.owner": pg.user,
        }.items():
            conn.execute("select set_config(%s, %s, true)", (name, value))
        for path in sql_files():
            conn.execute(path.read_text())
            applied.append(path.name)
    return applied
