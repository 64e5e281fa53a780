"""`python -m tickerlake.warehouse load|check|views`: the warehouse load outside Airflow.

    load   [--dataset NAME ...] [--reload]   load new/changed lake partitions (all datasets)
    check  [--dataset NAME ...] [--full]     lake vs warehouse, per partition loaded since the last
                                             check (--full: every partition, the lake read again);
                                             exit 2 on mismatch
    views                                    the analyst views' first rows
"""
from __future__ import annotations

import argparse
import sys

from tickerlake.core.errors import one_line_errors
from tickerlake.core.settings import get_settings
from tickerlake.warehouse.datasets import Datasets


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.warehouse")
    parser.add_argument("command", choices=["load", "check", "views"])
    parser.add_argument("--dataset", action="append", choices=[d.name for d in Datasets.all()])
    parser.add_argument("--reload", action="store_true",
                        help="forget the ledger of the chosen datasets and load everything again")
    parser.add_argument("--full", action="store_true",
                        help="check: every partition, the lake side read again from the lake")
    args = parser.parse_args(argv)
    from tickerlake.warehouse import pipeline

    settings = get_settings()
    if args.command == "load":
        for report in pipeline.load(settings, args.dataset, reload=args.reload):
            print(report.line())
    elif args.command == "check":
        checks = pipeline.check(settings, args.dataset, full=args.full)
        print(f"consistent: {len(checks)} partition(s), {sum(c.lake[0] for c in checks):,} rows")
    else:
        for view, (columns, rows) in pipeline.preview_views(settings).items():
            print(f"{view}: {', '.join(columns)}")
            for row in rows:
                print("   ", row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
