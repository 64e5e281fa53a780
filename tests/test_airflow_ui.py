"""`make airflow-ui`: the four Airflow components on 127.0.0.1, a working login, stopped by PID."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from tickerlake.core.processes import free_port
from tickerlake.core.settings import REPO_ROOT


def _run(action: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tickerlake.dev.airflow_ui", action], env=env,
                          capture_output=True, text=True, timeout=240)


def test_the_ui_starts_on_loopback_logs_in_lists_the_dags_and_stops(stack, settings):
    import os

    from minio_init.warehouse import ensure_databases

    ensure_databases(settings.pg)
    port = free_port()
    env = {**os.environ, "TICKERLAKE_AIRFLOW_PORT": str(port)}
    try:
        started = _run("up", env)
        assert started.returncode == 0, started.stdout + started.stderr
        password = started.stdout.split("password: ")[1].split()[0]
        assert f"http://127.0.0.1:{port}  user: admin" in started.stdout
        listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        ours = [line for line in listening.splitlines() if f":{port} " in line]
        assert ours and all("127.0.0.1:" in line for line in ours)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/auth/token", method="POST",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        token = json.load(urllib.request.urlopen(request, timeout=10))["access_token"]
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=10)
        assert json.load(health)["metadatabase"]["status"] == "healthy"
        # Every DAG file's DAG shows up once the dag-processor has parsed the folder.
        expected = {path.stem for path in (REPO_ROOT / "dags").glob("*.py") if path.stem != "__init__"}
        listed: set[str] = set()
        deadline = time.monotonic() + 120
        while listed != expected and time.monotonic() < deadline:
            dags = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/dags?limit=100",
                                          headers={"Authorization": f"Bearer {token}"})
            listed = {d["dag_id"] for d in json.load(urllib.request.urlopen(dags, timeout=10))["dags"]}
            time.sleep(2)
        assert listed == expected
    finally:
        stopped = _run("down", env)
    assert stopped.stdout.count("stopped") == 4, stopped.stdout
    assert _run("status", env).stdout.count("not running") == 4
