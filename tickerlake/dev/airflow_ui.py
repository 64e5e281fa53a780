"""`python -m tickerlake.dev.airflow_ui up|down|status`: the Airflow web UI on 127.0.0.1 (`make airflow-ui`).

Runs Airflow's components separately rather than `airflow standalone`, whose log servers listen
on every interface: `api-server` (UI + REST API), `scheduler --skip-serve-logs`,
`dag-processor` and `triggerer --skip-serve-logs`, LocalExecutor on the stack's Postgres, each
detached and tracked by PID under the state directory (stopped by PID with `down`).

Login: Airflow 3's simple auth manager with one user, `admin`; its password is generated on
first start into AIRFLOW_HOME/simple_auth_manager_passwords.json.generated and printed here.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from tickerlake.core.errors import StackError, one_line_errors
from tickerlake.core.processes import PidFile, port_in_use, spawn, stop, wait_until
from tickerlake.core.settings import Settings, get_settings
from tickerlake.dev.airflow_local import airflow_env, run_airflow

HOST = "127.0.0.1"
COMPONENTS = {
    "api-server": ["api-server", "--host", HOST],  # + --port
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def _env(settings: Settings) -> dict[str, str]:
    port = settings.airflow.port
    return {**airflow_env(settings),
            "AIRFLOW__API__HOST": HOST, "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://{HOST}:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}


def _pid_file(settings: Settings, name: str) -> PidFile:
    return PidFile(settings.stack.state_dir / "pids" / f"airflow-{name}.json")


def _healthy(settings: Settings) -> bool:
    url = f"http://{HOST}:{settings.airflow.port}/api/v2/monitor/health"
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def up(settings: Settings) -> None:
    run_airflow(["version"], settings, capture=True)  # migrates the metadata DB on first use
    airflow = str(Path(sys.executable).parent / "airflow")
    logs = settings.stack.state_dir / "logs"
    port = settings.airflow.port
    if _pid_file(settings, "api-server").running_pid() is None and port_in_use(HOST, port):
        raise StackError(f"port {HOST}:{port} is in use by another process; set TICKERLAKE_AIRFLOW_PORT")
    for name, args in COMPONENTS.items():
        pid_file = _pid_file(settings, name)
        if pid_file.running_pid() is None:
            extra = ["--port", str(port)] if name == "api-server" else []
            spawn([airflow, *args, *extra], logs / f"airflow-{name}.log", pid_file, env=_env(settings))
    wait_until(lambda: _healthy(settings), what="the Airflow api-server", timeout=120,
               pid_file=_pid_file(settings, "api-server"), log_path=logs / "airflow-api-server.log")
    passwords = Path(airflow_env(settings)["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text()).get("admin", "?") if passwords.exists() else "(see the api-server log)"
    print(f"Airflow UI: http://{HOST}:{port}  user: admin  password: {password}\n"
          f"(password file: {passwords}; stop with `make airflow-ui-down`; DAGs start paused: unpause to schedule)")


def down(settings: Settings) -> None:
    for name in reversed(COMPONENTS):
        print(f"airflow {name:<14} {'stopped' if stop(_pid_file(settings, name)) else 'not running'}")


def status(settings: Settings) -> None:
    for name in COMPONENTS:
        pid = _pid_file(settings, name).running_pid()
        print(f"airflow {name:<14} {f'running (pid {pid})' if pid else 'not running'}")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.airflow_ui")
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    {"up": up, "down": down, "status": status}[args.action](get_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
