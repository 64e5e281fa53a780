"""Jar provisioning: pinned, checksum-verified, and a clear error when something is missing."""
from __future__ import annotations

import shutil

import pytest

from tickerlake.core.errors import StackError
from tickerlake.core.jars import CORE_JARS, jar_paths, sha256_of
from tickerlake.core.settings import SparkSettings
from tickerlake.dev.jars import _check_pinned, provision


def test_provisioned_core_jars_match_their_pins():
    jars_dir = SparkSettings().jars_dir
    for jar in CORE_JARS:
        path = jars_dir / jar.name
        assert path.is_file(), f"{path} missing: run `make jars`"
        assert sha256_of(path) == jar.registry.sha256, jar.name


def test_a_tampered_jar_is_rejected_and_removed(tmp_path):
    jar = CORE_JARS[3]  # the small one (Postgres JDBC)
    copy = tmp_path / jar.name
    shutil.copyfile(SparkSettings().jars_dir / jar.name, copy)
    with copy.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(StackError, match=f"{jar.name}: SHA-256 .* does not match the pinned"):
        _check_pinned(jar, copy)
    assert not copy.exists()


def test_missing_jars_name_the_fix(tmp_path):
    with pytest.raises(StackError, match="run `make jars`"):
        jar_paths(tmp_path)


def test_an_installed_jar_tampered_after_install_is_replaced_and_the_lock_keeps_its_pin(tmp_path):
    jar = CORE_JARS[3]  # the Postgres JDBC driver: a Debian file, no download needed
    first = provision(tmp_path, None, log=lambda _: None, jars=(jar,))
    assert first == {jar.name: jar.registry.sha256}
    with (tmp_path / jar.name).open("ab") as handle:
        handle.write(b"tampered")
    said: list[str] = []
    second = provision(tmp_path, None, log=said.append, jars=(jar,))
    assert any("tampered or truncated" in line for line in said), said
    assert sha256_of(tmp_path / jar.name) == jar.registry.sha256
    assert second == first  # the lock was not rewritten from the tampered file
