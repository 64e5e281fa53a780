"""docker-compose.yml, checked statically (no Docker engine runs on the CI machines)."""
from __future__ import annotations

import re

import pytest
import yaml

import tickerlake.core.settings as settings_module
from tickerlake.core.settings import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
REAL_IMAGES = ("minio/minio:", "apache/kafka:", "postgres:", "apache/spark:")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _required_variables() -> set[str]:
    required = set()
    for cls in settings_module._GROUPS.values():
        prefix = cls.model_config["env_prefix"]
        required |= {f"{prefix}{name}".upper() for name, field in cls.model_fields.items()
                     if field.is_required()}
    return required


def test_the_file_parses_with_the_expected_services(compose):
    assert {"postgres", "minio", "kafka", "spark-master", "spark-worker", "minio_init",
            "airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= set(compose["services"])


def test_every_service_has_a_pinned_image_or_a_build(compose):
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert image or "build" in service, f"{name}: no image and no build"
        if image and "build" not in service and not image.startswith("tickerlake/"):
            tag = image.rsplit(":", 1)[1] if ":" in image else ""
            assert tag and tag != "latest", f"{name}: image {image!r} is not pinned by tag"


def test_the_real_images_are_used():
    text = COMPOSE.read_text()
    for image in REAL_IMAGES[:3]:
        assert f"image: {image}" in text, image
    assert "FROM apache/spark:3.5" in (REPO_ROOT / "Dockerfile.spark").read_text()
    assert "FROM apache/airflow:3." in (REPO_ROOT / "Dockerfile.airflow").read_text()


def test_every_required_setting_is_set_for_each_tickerlake_service(compose):
    required = _required_variables()
    assert required, "the settings have required variables (the secrets)"
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        if not any(str(k).startswith("TICKERLAKE_") for k in env):
            continue  # not a tickerlake process (postgres, minio, kafka)
        missing = required - set(env)
        assert not missing, f"{name}: {sorted(missing)} not set"


def test_environment_names_are_real_settings(compose):
    """A typo in compose would silently fall back to a default: every TICKERLAKE_ name exists."""
    known = set()
    for cls in settings_module._GROUPS.values():
        prefix = cls.model_config["env_prefix"]
        known |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    used = set(re.findall(r"\b(TICKERLAKE_[A-Z0-9_]+)\s*:", COMPOSE.read_text()))
    assert used and used <= known, sorted(used - known)


def test_mounted_paths_and_build_files_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name}: mounted path {source} missing"
        build = service.get("build")
        if build:
            assert (REPO_ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


def test_ports_are_published_on_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not bound to 127.0.0.1"


def test_secrets_are_interpolated_never_written(compose):
    text = COMPOSE.read_text()
    for variable in ("TICKERLAKE_S3_SECRET_ACCESS_KEY", "TICKERLAKE_PG_PASSWORD"):
        values = re.findall(rf"^\s*{variable}:\s*(\S+)", text, re.MULTILINE)
        assert values and all(v.startswith("${") for v in values), variable
