"""Security: the S3 console asks for a login whose password is never on a command line, and no
secret's value appears in any log the session's services, jobs and Airflow runs wrote."""
from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import psutil
import pytest
from pydantic import SecretStr


def _secrets(settings) -> dict[str, str]:
    """Every secret setting's value (name -> value), and the Airflow secrets the stack generated."""
    found = {}
    for group_name, group in settings:
        for field, value in group:
            if isinstance(value, SecretStr) and len(value.get_secret_value()) >= 8:
                found[f"{group_name}.{field}"] = value.get_secret_value()
    for path in (settings.stack.state_dir / "airflow").glob("*.secret"):
        found[f"airflow/{path.name}"] = path.read_text().strip()
    fernet = settings.stack.state_dir / "airflow" / "fernet.key"
    if fernet.exists():
        found["airflow/fernet.key"] = fernet.read_text().strip()
    return found


def test_the_s3_console_asks_for_a_login_and_its_password_is_not_on_a_command_line(stack, settings):
    from tickerlake.dev.services import S3Server

    console = settings.s3.console_url
    with urllib.request.urlopen(console + "/", timeout=10) as response:  # follows the redirect
        assert "/login" in response.url, response.url
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def log_in(password: str) -> str:
        with opener.open(console + "/login", timeout=10) as page:  # the form carries a CSRF token
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"',
                              page.read().decode())
        assert token, "no csrf_token in the login form"
        form = {"username": settings.s3.console_user, "password": password,
                "csrf_token": token.group(1) or token.group(2)}
        with opener.open(console + "/login", data=urllib.parse.urlencode(form).encode(), timeout=10) as response:
            return response.url

    assert "/login" in log_in("not-the-password")  # refused
    assert "/login" not in log_in(settings.s3.console_password.get_secret_value())  # in

    pid = S3Server(settings).pid_file.running_pid()
    assert pid is not None
    secret = settings.s3.console_password.get_secret_value()
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        assert not any(secret in part for part in process.cmdline())


def _logs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (p.suffix in {".log", ".out", ".err"}
                                                           or "logs" in p.relative_to(root).parts)]


@pytest.mark.after_all
def test_no_secret_value_appears_in_any_log(stack, settings):
    """After every other test (the demo's steps: backfill, transform, load, the stream under the
    supervisor, Airflow task runs, the monitoring services): grep every log for every secret."""
    secrets = _secrets(settings)
    logs = _logs(settings.stack.state_dir)
    assert secrets and logs
    leaks = []
    for path in logs:
        text = path.read_bytes()
        leaks += [f"{name} in {path}" for name, value in secrets.items() if value.encode() in text]
    assert not leaks, leaks


def test_a_backfill_refuses_a_symbol_that_is_not_one():
    from datetime import date

    from ingestion.backfill import plan_jobs

    with pytest.raises(ValueError, match=r"symbols: '\.\./ETC', 'A B' not a symbol"):
        plan_jobs("synthetic", "1d", ["aapl", "../etc", "a b"], date(2026, 1, 2), date(2026, 1, 3), 5)
    assert plan_jobs("synthetic", "1d", ["brk.b", "^GSPC"], date(2026, 1, 2), date(2026, 1, 3), 5)
