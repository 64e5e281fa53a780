"""Provision the exact jars the lake's Spark session needs, pinned and checksum-verified.

Each jar has one or more sources, tried in order:

1. Maven coordinates, where a Maven repository is reachable (the Docker image build, a laptop):
   verified against the repository's published ``.sha1``; the jar's SHA-256 is then recorded.
2. A registry package that ships the same jar (PyPI wheel/sdist, Debian package), for machines
   that reach only the package registries: verified against a pinned SHA-256.

Spark's Kafka source (``spark-sql-kafka-0-10`` and the jars it needs) is published only to Maven;
machines without Maven Central take it from a local folder standing in for Maven
(``TICKERLAKE_SPARK_LOCAL_JARS_DIR``; here ``../shared/jars/spark-kafka``), where each jar is the
file with the pinned SHA-256, whatever its name.

Usage: ``python -m tickerlake.dev.jars [--dir DIR] [--no-maven]``; prints the jars and their SHA-256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tickerlake.core.errors import StackError, one_line_errors
from tickerlake.core.jars import ALL_JARS, LOCK_FILE, DebianFile, Jar, LocalFolder, PyPIMember, sha256_of


def maven_reachable(repo: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(repo + "/", method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False


def _from_maven(jar: Jar, repo: str, target: Path) -> None:
    assert jar.maven is not None
    url = f"{repo}/{jar.maven.path}"
    with urllib.request.urlopen(url + ".sha1", timeout=30) as response:
        expected = response.read().decode().split()[0].strip().lower()
    partial = target.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=300) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out)
    actual = hashlib.sha1(partial.read_bytes()).hexdigest()
    if actual != expected:
        partial.unlink()
        raise StackError(f"{jar.name}: SHA-1 from {url} is {actual}, the repository says {expected}")
    partial.replace(target)


def _pip_download(requirement: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(into),
               requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    archives = [p for p in into.iterdir() if p.suffix in {".whl", ".gz"}]
    if done.returncode != 0 or not archives:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"pip download {requirement} failed: {tail}")
    return archives[0]


def _extract(archive: Path, member: str, target: Path) -> None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with tarfile.open(archive) as tf:
            member_file = tf.extractfile(member)
            if member_file is None:
                raise StackError(f"{member} not found in {archive.name}")
            with member_file, target.open("wb") as out:
                shutil.copyfileobj(member_file, out)


def _from_registry(jars: list[Jar], target_dir: Path) -> None:
    """Fetch the registry sources, downloading each PyPI archive once."""
    by_requirement: dict[str, list[Jar]] = {}
    for jar in jars:
        if isinstance(jar.registry, PyPIMember):
            by_requirement.setdefault(jar.registry.requirement, []).append(jar)
        elif isinstance(jar.registry, DebianFile):
            source = Path(jar.registry.path)
            if not source.is_file():
                raise StackError(
                    f"{jar.name}: {source} is missing; install the Debian package "
                    f"{jar.registry.package} (the setup script does)"
                )
            shutil.copyfile(source, target_dir / jar.name)
    for requirement, group in by_requirement.items():
        with tempfile.TemporaryDirectory() as tmp:
            archive = _pip_download(requirement, Path(tmp))
            for jar in group:
                assert isinstance(jar.registry, PyPIMember)
                _extract(archive, jar.registry.member, target_dir / jar.name)


def _check_pinned(jar: Jar, path: Path) -> None:
    if jar.registry is None:
        return
    actual = sha256_of(path)
    if actual != jar.registry.sha256:
        path.unlink()
        raise StackError(f"{jar.name}: SHA-256 {actual} does not match the pinned {jar.registry.sha256}")


def provision(target_dir: Path, maven_repo: str | None, log=print,
              jars: tuple[Jar, ...] = ALL_JARS, local_dir: Path | None = None) -> dict[str, str]:
    """Make `target_dir` hold every jar: from the local folder standing in for Maven (`local_dir`,
    a jar being the file with its pinned SHA-256), from Maven where reachable, or from a registry.

    Idempotent: a jar already present whose SHA-256 equals the one recorded when it was installed
    is kept; one that differs (tampered, truncated) is deleted, reported and fetched again. The
    lock (``jars.lock.json``) records the SHA-256 of each jar as verified on install (against the
    repository's ``.sha1`` or the pinned SHA-256), never what happens to be on disk. Returns it.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    lock_path = target_dir / LOCK_FILE
    lock: dict[str, str] = json.loads(lock_path.read_text()) if lock_path.exists() else {}
    use_maven = bool(maven_repo) and maven_reachable(maven_repo)  # type: ignore[arg-type]
    log(f"Maven repository {'reachable' if use_maven else 'not reachable'}: "
        f"{'Maven coordinates' if use_maven else 'registry packages'} first")

    missing = [j for j in jars if not _verified(j, target_dir, lock, log)]
    local = _local_index(local_dir, log) if any(isinstance(j.registry, LocalFolder) for j in missing) else {}
    from_registry = []
    for jar in missing:
        lock.pop(jar.name, None)
        path = target_dir / jar.name
        if isinstance(jar.registry, LocalFolder) and jar.registry.sha256 in local:
            shutil.copyfile(local[jar.registry.sha256], path)
            _check_pinned(jar, path)  # copied, then hashed again: what landed is what was pinned
            lock[jar.name] = jar.registry.sha256
            log(f"  {jar.name}: from {local[jar.registry.sha256]} (SHA-256 pinned)")
            continue
        if use_maven and jar.maven is not None:
            try:
                _from_maven(jar, maven_repo, path)  # type: ignore[arg-type]
                _check_pinned(jar, path)
                lock[jar.name] = sha256_of(path)  # of the download just checked against its .sha1
                log(f"  {jar.name}: from Maven {jar.maven.coordinate}")
                continue
            except (OSError, StackError) as exc:
                log(f"  {jar.name}: Maven failed ({exc}); trying the registry")
        if isinstance(jar.registry, LocalFolder):
            raise StackError(f"{jar.name} ({jar.maven.coordinate if jar.maven else '?'}): not in "
                             f"TICKERLAKE_SPARK_LOCAL_JARS_DIR={local_dir} and no Maven repository reachable; "
                             "point the setting at a folder holding it or run where Maven Central is reachable")
        if jar.registry is not None:
            from_registry.append(jar)
        elif jar.optional:
            log(f"  {jar.name}: no source reachable, left out (optional)")
        else:
            raise StackError(f"{jar.name}: no reachable source")
    if from_registry:
        _from_registry(from_registry, target_dir)
        for jar in from_registry:
            assert jar.registry is not None
            _check_pinned(jar, target_dir / jar.name)
            lock[jar.name] = jar.registry.sha256
            log(f"  {jar.name}: from {jar.registry.__class__.__name__} "
                f"{getattr(jar.registry, 'requirement', getattr(jar.registry, 'package', ''))}")
    lock_path.write_text(json.dumps(dict(sorted(lock.items())), indent=2) + "\n")
    return lock


def _local_index(folder: Path | None, log) -> dict[str, Path]:
    """SHA-256 -> path of every jar in the local folder (names do not matter, contents do)."""
    if folder is None or not folder.is_dir():
        log(f"  local jar folder {folder}: not there (TICKERLAKE_SPARK_LOCAL_JARS_DIR)")
        return {}
    return {sha256_of(path): path for path in sorted(folder.glob("*.jar"))}


def _verified(jar: Jar, target_dir: Path, lock: dict[str, str], log) -> bool:
    """True when the jar is installed and its SHA-256 is the one recorded on install."""
    path = target_dir / jar.name
    if not path.exists():
        return False
    if jar.name in lock and sha256_of(path) == lock[jar.name]:
        return True
    log(f"  {jar.name}: SHA-256 differs from the one recorded on install "
        f"({'tampered or truncated' if jar.name in lock else 'not in the lock'}); deleted, fetching again")
    path.unlink()
    return False


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.settings import SparkSettings  # jars need no other (secret) settings

    spark = SparkSettings()
    parser = argparse.ArgumentParser(prog="python -m tickerlake.dev.jars", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=spark.jars_dir)
    parser.add_argument("--no-maven", action="store_true", help="use only the registry packages")
    args = parser.parse_args(argv)
    lock = provision(args.dir, None if args.no_maven else spark.maven_repo, local_dir=spark.local_jars_dir)
    for name, digest in sorted(lock.items()):
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
