"""`python -m minio_init [--only buckets,topics,warehouse]`: initialise the stores, idempotently."""
from __future__ import annotations

import argparse
import sys

from minio_init.airflow_views import VIEW, ensure_run_history_view
from minio_init.buckets import ensure_buckets
from minio_init.topics import ensure_topics
from minio_init.warehouse import apply_sql, ensure_databases
from tickerlake.core.errors import one_line_errors
from tickerlake.core.settings import get_settings

STEPS = ("buckets", "topics", "warehouse", "airflow")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minio_init")
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated steps out of {', '.join(STEPS)}")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"--only: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    settings = get_settings()
    if "buckets" in steps:
        for bucket, outcome in ensure_buckets(settings.s3).items():
            print(f"bucket    {bucket:<22} {outcome}")
    if "topics" in steps:
        for topic, outcome in ensure_topics(settings.kafka).items():
            print(f"topic     {topic:<22} {outcome}")
    if "warehouse" in steps:
        for database, outcome in ensure_databases(settings.pg).items():
            print(f"database  {database:<22} {outcome}")
        for name in apply_sql(settings.pg):
            print(f"sql       {name:<22} applied")
    if "airflow" in steps:
        print(f"view      {VIEW:<22} {ensure_run_history_view(settings.pg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
