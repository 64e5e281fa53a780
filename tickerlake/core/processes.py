"""Detached processes tracked by PID file, and the waits around them (psutil underneath).

A PID file holds the PID and the process's creation time, so a recycled PID is never mistaken
for ours and nothing we did not start is ever signalled. Used by the stream supervisor in
production and by the local developer stack.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from tickerlake.core.errors import StackError


def _ours(pid: int, created: float | None) -> psutil.Process | None:
    """The live process with this PID and creation time, else None (gone, recycled or a zombie)."""
    try:
        process = psutil.Process(pid)
        if created is None or abs(process.create_time() - created) > 0.01:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None  # exited, not yet reaped
        return process
    except psutil.Error:
        return None


@dataclass(frozen=True)
class PidFile:
    path: Path

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"pid": pid, "created": psutil.Process(pid).create_time()}))

    def _record(self) -> tuple[int, float | None] | None:
        try:
            record = json.loads(self.path.read_text())
            return int(record["pid"]), record.get("created")
        except (OSError, ValueError, KeyError):
            return None

    def running_pid(self) -> int | None:
        """Our process's PID if it is still alive (and is the one we started), else None."""
        record = self._record()
        if record is None:
            return None
        return record[0] if _ours(*record) is not None else None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(command: list[str], log_path: Path, pid_file: PidFile, *, cwd: Path | None = None,
          env: dict[str, str] | None = None, user: str | None = None) -> int:
    """Start `command` detached (own session, output to `log_path`) and record its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # survives the CLI that started it; Ctrl-C does not reach it
            user=user,
        )
    pid_file.write(process.pid)
    return process.pid


def stop(pid_file: PidFile, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Signal our process, wait for it to exit (SIGKILL after `timeout`). False if not running."""
    record = pid_file._record()
    process = _ours(*record) if record else None
    if process is None:
        pid_file.clear()
        return False
    process.send_signal(sig)
    deadline = time.monotonic() + timeout
    while not _fully_exited(process):
        _reap(process.pid)
        if time.monotonic() > deadline:
            process.kill()
            deadline = time.monotonic() + 5
        time.sleep(0.1)
    pid_file.clear()
    return True


def _fully_exited(process: psutil.Process) -> bool:
    """Gone, or a zombie with no thread left. A multi-threaded (Go) process's leader turns
    zombie while its other threads still run and hold the listening sockets."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE and process.num_threads() <= 1
    except psutil.Error:
        return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by an earlier CLI run): init reaps it


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, pid_file: PidFile | None = None,
               log_path: Path | None = None) -> None:
    """Poll `check` until true; fail fast with the log's tail if our process died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not ready yet; any failure means "poll again"
            pass
        if pid_file is not None and pid_file.running_pid() is None:
            raise StackError(f"{what} exited during start-up{_tail(log_path)}")
        time.sleep(0.2)
    raise StackError(f"{what} did not become healthy within {timeout:.0f}s{_tail(log_path)}")


def _tail(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    return f"; last log line ({log_path}): {lines[-1][:300]}" if lines else ""
