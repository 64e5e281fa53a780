"""Detached processes tracked by PID file, and the waits around them.

A PID file holds the PID and the process's start time (from /proc), so a recycled PID is never
mistaken for ours and nothing we did not start is ever signalled.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tickerlake.errors import StackError


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the ")" that closes the command name.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class PidFile:
    path: Path

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"pid": pid, "start_time": _start_time(pid)}))

    def running_pid(self) -> int | None:
        """Our process's PID if it is still alive (and is the one we started), else None."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        if _start_time(pid) is None or _start_time(pid) != record.get("start_time"):
            return None
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None  # a zombie: exited, not yet reaped
        return pid

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
    pid = pid_file.running_pid()
    if pid is None:
        pid_file.clear()
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while not _fully_exited(pid):
        _reap(pid)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.1)
    pid_file.clear()
    return True


def _fully_exited(pid: int) -> bool:
    """Gone, or a zombie with no thread left. A multi-threaded (Go) process's leader turns
    zombie while its other threads still run and hold the listening sockets."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(proc / "task"))
    except OSError:
        return True
    return state == "Z" and threads <= 1


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
