"""`python -m tickerlake.dev.stack up|down|status`: the embedded local stack, by PID."""
from __future__ import annotations

import argparse
import sys

from tickerlake.core.errors import one_line_errors
from tickerlake.core.settings import get_settings
from tickerlake.dev.services import monitoring_services, services


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--only", choices=["data", "monitoring"],
                        help="data: S3, Kafka, Postgres; monitoring: Prometheus, Alertmanager, "
                             "Pushgateway, exporter, dashboard (default: both)")
    args = parser.parse_args(argv)
    settings = get_settings()
    stack = ([] if args.only == "monitoring" else services(settings)) + \
        ([] if args.only == "data" else monitoring_services(settings))

    if args.command == "up":
        for service in stack:
            outcome = service.up()
            print(f"{service.name:<12} {outcome:<16} {service.address}")
        print(f"state: {settings.stack.state_dir}  (logs in logs/, PIDs in pids/)")
        return 0
    if args.command == "down":
        # Reverse order: the readers (dashboard, exporter) before the stores they read.
        for service in reversed(stack):
            print(f"{service.name:<12} {'stopped' if service.down() else 'not running'}")
        return 0

    unhealthy = 0
    for service in stack:
        health = service.health()
        state = "healthy" if health.healthy else ("UNHEALTHY" if health.running else "stopped")
        unhealthy += not health.healthy
        pid = f"pid {health.pid}" if health.pid else ""
        print(f"{service.name:<12} {state:<10} {pid:<11} {health.address} {health.detail}".rstrip())
    return 1 if unhealthy else 0


if __name__ == "__main__":
    sys.exit(main())
