"""A read-only view of Airflow's DAGs and their runs for the dashboard's analyst role.

The analyst may read `public.tickerlake_dag_runs` in Airflow's metadata database and nothing else
there (not the connections, variables or XComs). Applied after `airflow db migrate` (the local
wrappers and compose's airflow-init run `python -m minio_init --only airflow`).
"""
from __future__ import annotations

from psycopg import sql

from tickerlake.core.clients import pg_connect
from tickerlake.core.settings import PostgresSettings

VIEW = "tickerlake_dag_runs"


def ensure_run_history_view(pg: PostgresSettings) -> str:
    with pg_connect(pg, dbname=pg.airflow_database, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.dag_run')").fetchone()
        if not exists or exists[0] is None:
            return "skipped (no dag_run table yet: run after `airflow db migrate`)"
        conn.execute(sql.SQL("DROP VIEW IF EXISTS public.{}").format(sql.Identifier(VIEW)))
        conn.execute(sql.SQL(
            "CREATE VIEW public.{} AS SELECT d.dag_id, d.is_paused, r.run_id, r.run_type, "
            "r.state, r.logical_date, r.start_date, r.end_date "
            "FROM public.dag d LEFT JOIN public.dag_run r ON r.dag_id = d.dag_id").format(sql.Identifier(VIEW)))
        analyst = sql.Identifier(pg.analyst_user)
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(pg.airflow_database), analyst))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(analyst))
        conn.execute(sql.SQL("GRANT SELECT ON public.{} TO {}").format(sql.Identifier(VIEW), analyst))
    return "applied"
