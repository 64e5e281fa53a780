"""Jar provisioning: pinned, checksum-verified, and a clear error when something is missing."""
from __future__ import annotations

import shutil

import pytest

from tickerlake.errors import StackError
from tickerlake.jars import CORE_JARS, _check_pinned, jar_paths, sha256_of
from tickerlake.settings import SparkSettings


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
