"""Settings: typed, validated on construction, errors name the variable in one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tickerlake.core.errors import ConfigError
from tickerlake.core.settings import REPO_ROOT, load_settings

REQUIRED = {
    "TICKERLAKE_S3_ACCESS_KEY_ID": "tickerlake",
    "TICKERLAKE_S3_SECRET_ACCESS_KEY": "s3-secret-value",
    "TICKERLAKE_S3_CONSOLE_PASSWORD": "console-secret-value",
    "TICKERLAKE_PG_PASSWORD": "pg-secret-value",
    "TICKERLAKE_PG_ANALYST_PASSWORD": "analyst-secret-value",
    "TICKERLAKE_PG_LOADER_PASSWORD": "loader-secret-value",
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Only the variables a test sets, and no .env file in reach."""
    import os

    for key in list(os.environ):
        if key.startswith("TICKERLAKE_"):
            monkeypatch.delenv(key)
    import tickerlake.core.settings as module

    for cls in module._GROUPS.values():  # every group, so a developer's .env cannot leak in
        monkeypatch.setitem(cls.model_config, "env_file", tmp_path / "absent.env")
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_defaults_point_at_the_local_stack(clean_env):
    settings = load_settings()
    assert settings.s3.endpoint_url == "http://127.0.0.1:8333"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (settings.pg.host, settings.pg.port) == ("127.0.0.1", 55432)
    assert settings.spark.master == "local[2]"


def test_missing_secret_names_the_variable(clean_env):
    clean_env.delenv("TICKERLAKE_S3_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == "TICKERLAKE_S3_SECRET_ACCESS_KEY is not set (see .env.example)"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TICKERLAKE_PG_PORT", "fifty", "TICKERLAKE_PG_PORT: Input should be a valid integer"),
        ("TICKERLAKE_PG_PORT", "70000", "TICKERLAKE_PG_PORT: Input should be less than or equal to 65535"),
        ("TICKERLAKE_S3_ENDPOINT_URL", "127.0.0.1:8333",
         "TICKERLAKE_S3_ENDPOINT_URL: must be an http:// or https:// URL, got '127.0.0.1:8333'"),
        ("TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS", "broker",
         "TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS: must be a comma-separated list of host:port"),
        ("TICKERLAKE_SPARK_MASTER", "mesos://x", "TICKERLAKE_SPARK_MASTER: must be local, local[N]"),
    ],
)
def test_invalid_value_names_the_variable_and_the_problem(clean_env, variable, value, expected):
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_secrets_never_appear_in_repr_or_errors(clean_env):
    settings = load_settings()
    text = repr(settings) + str(settings)
    for secret in ("s3-secret-value", "pg-secret-value", "analyst-secret-value"):
        assert secret not in text
    clean_env.setenv("TICKERLAKE_PG_PASSWORD", "short")  # too short: rejected without echoing it
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "TICKERLAKE_PG_PASSWORD" in str(info.value) and "short" not in str(info.value).split(":", 1)[1]


def test_cli_prints_one_line_not_a_traceback(clean_env):
    clean_env.setenv("TICKERLAKE_PG_PORT", "not-a-port")
    done = subprocess.run([sys.executable, "-m", "tickerlake.dev.stack", "status"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tickerlake: error: TICKERLAKE_PG_PORT:")


def test_every_settings_group_is_isolated_by_the_fixture(clean_env, tmp_path):
    """A developer's .env must not reach these tests, whichever group it sets."""
    import tickerlake.core.settings as module

    assert all(cls.model_config["env_file"] == tmp_path / "absent.env" for cls in module._GROUPS.values())
    settings = load_settings()
    assert not settings.snowflake.configured
    assert settings.warehouse.backend == module.WarehouseBackend.AUTO


def test_an_unknown_variable_is_warned_about_in_one_line_naming_the_closest_setting(clean_env, caplog):
    clean_env.setenv("TICKERLAKE_PG_PROT", "5432")
    with caplog.at_level("WARNING", logger="tickerlake.core.settings"):
        load_settings()
    lines = [r.getMessage() for r in caplog.records if "TICKERLAKE_PG_PROT" in r.getMessage()]
    assert lines == ["tickerlake: warning: TICKERLAKE_PG_PROT is not a tickerlake setting and is ignored; "
                     "did you mean TICKERLAKE_PG_PORT?"]


def test_airflow_port_and_warehouse_backend_are_validated_settings(clean_env):
    clean_env.setenv("TICKERLAKE_AIRFLOW_PORT", "8090")
    clean_env.setenv("TICKERLAKE_WAREHOUSE_BACKEND", "postgres")
    settings = load_settings()
    assert settings.airflow.port == 8090 and settings.warehouse.backend == "postgres"
    clean_env.setenv("TICKERLAKE_WAREHOUSE_BACKEND", "oracle")
    with pytest.raises(ConfigError, match="^TICKERLAKE_WAREHOUSE_BACKEND: Input should be 'auto', 'postgres'"):
        load_settings()


def test_every_tickerlake_name_in_env_example_is_a_setting():
    import re

    import tickerlake.core.settings as module

    example = (REPO_ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*(TICKERLAKE_[A-Z0-9_]+)=", example, re.MULTILINE))
    assert named and named <= module.known_variables(), named - module.known_variables()


def test_env_example_documents_every_setting():
    """Every field of every group has its variable in .env.example (commented or not)."""
    import tickerlake.core.settings as module

    example = (REPO_ROOT / ".env.example").read_text()
    missing = []
    for cls in module._GROUPS.values():
        prefix = cls.model_config["env_prefix"]
        for field in cls.model_fields:
            if f"{prefix}{field}".upper() not in example:
                missing.append(f"{prefix}{field}".upper())
    assert missing == []


def test_env_file_gets_fresh_random_secrets(tmp_path):
    from tickerlake.dev.envfile import write_env_file

    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert write_env_file(first) and write_env_file(second)
    assert not write_env_file(first)  # never overwrites
    a, b = first.read_text(), second.read_text()
    assert "change-me" not in a
    secret_lines = [ln for ln in a.splitlines() if not ln.startswith("#")  # commented = optional, unset
                    and ("PASSWORD=" in ln or "SECRET" in ln.split("=")[0])]
    assert secret_lines and all(ln not in b for ln in secret_lines)
    assert oct(first.stat().st_mode & 0o777) == "0o600"
