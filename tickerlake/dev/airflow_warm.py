"""A warm `airflow` CLI: Airflow imported once, forked for each command (the suite's and the demo's).

    with warm_airflow(settings):
        run_airflow(["dags", "test", "lake_smoke", "2026-01-02"], settings)  # forked from the warm process

A cold `airflow dags test` here spends about 12 of its 21 seconds before the DAG's first task
does any work: importing Airflow, its CLI, the in-process execution API and what the DAG files
import. This process imports all that once, then serves each command from a fork of itself
(the stdlib's `ForkingUnixStreamServer`): the child runs Airflow's own CLI entry point with the
caller's arguments, working directory and environment, its output in files the caller named,
and its exit code goes back over the socket. The parent opens no connection and starts no
thread before it forks, so each child starts as clean as a new `airflow` process, only
already imported.

`run_airflow` uses it only when the caller's Airflow environment (every AIRFLOW_* variable) is
the one this process was started with, and runs a cold `airflow` otherwise. It listens on a Unix
socket in the state directory (owner-only), and is stopped by its PID.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import socketserver
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# What a `dags test` imports after Airflow's CLI (measured: 632 modules, 3 s), the DAG files'
# own imports included. A module missing here only makes the child import it itself.
PRELOAD = (
    "airflow.__main__", "airflow.cli.commands.dag_command", "airflow.api_fastapi.execution_api.app",
    "airflow.sdk.execution_time.task_runner", "airflow.sdk.execution_time.supervisor",
    "airflow.providers.standard.operators.python", "airflow.providers.apache.spark.operators.spark_submit",
    "airflow.dag_processing.dagbag", "airflow.serialization.serialized_objects", "alembic", "a2wsgi",
    "boto3", "botocore.client", "requests", "pyarrow", "pandas", "exchange_calendars", "prometheus_client",
    "tickerlake.orchestration.dag_helpers", "tickerlake.orchestration.assets", "tickerlake.core.clients",
    "ingestion.backfill",
)


@dataclass(frozen=True)
class WarmAirflow:
    socket: Path
    env: dict[str, str]  # the AIRFLOW_* variables it was started with

    def serves(self, env: dict[str, str]) -> bool:
        return _airflow_vars(env) == self.env and self.socket.exists()


_active: WarmAirflow | None = None


def active_for(env: dict[str, str]) -> WarmAirflow | None:
    """The warm process started for this Airflow environment, if one is running."""
    return _active if _active is not None and _active.serves(env) else None


def _airflow_vars(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("AIRFLOW")}


def run(warm: WarmAirflow, args: list[str], env: dict[str, str], output_dir: Path) -> subprocess.CompletedProcess:
    """`airflow ARGS` in a fork of the warm process; the same result a cold run would give."""
    import socket

    with tempfile.TemporaryDirectory(dir=output_dir, prefix="airflow-run-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        request = {"args": args, "env": env, "cwd": os.getcwd(), "stdout": str(out), "stderr": str(err)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(warm.socket))
            client.sendall(json.dumps(request).encode() + b"\n")
            reply = client.makefile("rb").readline()
        code = int(json.loads(reply)["returncode"]) if reply else 1
        return subprocess.CompletedProcess(["airflow", *args], code, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:  # runs in the fork made for this request
        request = json.loads(self.rfile.readline())
        self.wfile.write(json.dumps({"returncode": _airflow_main(request)}).encode() + b"\n")
        self.wfile.flush()


def _airflow_main(request: dict) -> int:
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(request["env"])
    from tickerlake.core.settings import get_settings

    get_settings.cache_clear()  # read from the caller's environment, as a new process would
    os.chdir(request["cwd"])
    sys.argv = ["airflow", *request["args"]]
    from airflow import settings as airflow_settings
    from airflow.__main__ import main

    engine = getattr(airflow_settings, "engine", None)
    if engine is not None:  # SQLAlchemy's rule for a fork: never reuse the parent's pooled connections
        engine.dispose(close=False)

    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - as a cold `airflow` would: the traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return int(code or 0)


class _Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    max_children = 8


def serve(socket_path: Path) -> None:
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    socket_path.unlink(missing_ok=True)
    with _Server(str(socket_path), _Handler) as server:
        os.chmod(socket_path, 0o600)
        print("ready", flush=True)
        server.serve_forever()


@contextlib.contextmanager
def warm_airflow(settings) -> Iterator[WarmAirflow]:
    """Start the warm process for these settings' Airflow environment; stop it (by PID) after."""
    global _active
    from tickerlake.core.processes import PidFile, spawn, stop, wait_until
    from tickerlake.core.settings import REPO_ROOT
    from tickerlake.dev.airflow_local import airflow_env

    state = settings.stack.state_dir
    env = {**os.environ, **airflow_env(settings)}
    socket_path = state / "airflow-warm.sock"
    if len(str(socket_path)) > 100:  # a Unix socket's path has room for about 108 bytes
        socket_path = Path(tempfile.mkdtemp(prefix="tl-airflow-")) / "warm.sock"
    pid_file = PidFile(state / "pids" / "airflow-warm.pid")
    log_path = state / "logs" / "airflow-warm.log"
    spawn([sys.executable, "-m", "tickerlake.dev.airflow_warm", str(socket_path)], log_path, pid_file,
          cwd=REPO_ROOT, env=env)
    try:
        wait_until(lambda: socket_path.exists() and "ready" in log_path.read_text(), what="the warm airflow process",
                   timeout=120, pid_file=pid_file, log_path=log_path)
        _active = WarmAirflow(socket_path, _airflow_vars(env))
        yield _active
    finally:
        _active = None
        stop(pid_file)
        socket_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.airflow_warm", description=__doc__.splitlines()[0])
    parser.add_argument("socket", type=Path)
    serve(parser.parse_args(argv).socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
