"""`python -m tickerlake.dev.stack up|down|status`: the embedded local stack, by PID."""
from __future__ import annotations

import argparse
import sys

from tickerlake.core.errors import one_line_errors
from tickerlake.core.settings import get_settings
from tickerlake.dev.services import services


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    settings = get_settings()
    stack = services(settings)

    if args.command == "up":
        for service in stack:
            outcome = service.up()
            print(f"{service.name:<9} {outcome:<16} {service.address}")
        print(f"state: {settings.stack.state_dir}  (logs in logs/, PIDs in pids/)")
        return 0
    if args.command == "down":
        # Reverse order: clients (none yet) before the stores they write to.
        for service in reversed(stack):
            print(f"{service.name:<9} {'stopped' if service.down() else 'not running'}")
        return 0

    unhealthy = 0
    for service in stack:
        health = service.health()
        state = "healthy" if health.healthy else ("UNHEALTHY" if health.running else "stopped")
        unhealthy += not health.healthy
        pid = f"pid {health.pid}" if health.pid else ""
        print(f"{service.name:<9} {state:<10} {pid:<11} {health.address} {health.detail}".rstrip())
    return 1 if unhealthy else 0


if __name__ == "__main__":
    sys.exit(main())
