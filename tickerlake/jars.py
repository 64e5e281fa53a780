"""Provision the exact jars the lake's Spark session needs, pinned and checksum-verified.

Each jar has one or more sources, tried in order:

1. Maven coordinates, where a Maven repository is reachable (the Docker image build, a laptop):
   verified against the repository's published ``.sha1``; the jar's SHA-256 is then recorded.
2. A registry package that ships the same jar (PyPI wheel/sdist, Debian package), for machines
   that reach only the package registries: verified against a pinned SHA-256.

Spark's Kafka source (``spark-sql-kafka-0-10``) is published only to Maven: without Maven it is
left out and the streaming job uses its landing-file source instead.

Usage: ``python -m tickerlake.jars [--dir DIR] [--no-maven]``; prints the jars and their SHA-256.
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
from dataclasses import dataclass
from pathlib import Path

from tickerlake.errors import StackError, one_line_errors

# Spark 3.5 is built for Scala 2.12 in the pyspark wheel.
SPARK_VERSION = "3.5.9"
SCALA = "2.12"


@dataclass(frozen=True)
class Maven:
    coordinate: str  # group:artifact:version

    @property
    def path(self) -> str:
        group, artifact, version = self.coordinate.split(":")
        return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


@dataclass(frozen=True)
class PyPIMember:
    """A jar inside a PyPI distribution (wheel or sdist), fetched with `pip download`."""

    requirement: str  # name==version
    member: str  # path of the jar inside the archive
    sha256: str  # of the jar itself


@dataclass(frozen=True)
class DebianFile:
    """A jar installed by a Debian package (the setup script installs it)."""

    package: str
    path: str
    sha256: str


@dataclass(frozen=True)
class Jar:
    name: str  # the file name in the jars directory
    maven: Maven | None
    registry: PyPIMember | DebianFile | None
    optional: bool = False  # True: left out (with a note) when no source is reachable


CORE_JARS: tuple[Jar, ...] = (
    Jar(
        "iceberg-spark-runtime-3.5_2.12-1.10.2.jar",
        Maven("org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2"),
        # 1.0.3's jar lacks the shaded Jackson (NoClassDefFoundError JsonFactoryBuilder).
        PyPIMember(
            "snowpark-connect-deps-iceberg==1.0.2",
            "snowpark_connect_deps_iceberg/jars/iceberg-spark-runtime-3.5_2.12-1.10.2.jar",
            "c562d482dcd16b666e808b755469fbc4b2604284b41622c9d87e2c02b7cc6c5f",
        ),
    ),
    Jar(
        "hadoop-aws-3.3.1.jar",
        Maven("org.apache.hadoop:hadoop-aws:3.3.1"),
        PyPIMember(
            "sagemaker-pyspark==1.4.5",
            "sagemaker_pyspark-1.4.5/deps/jars/hadoop-aws-3.3.1.jar",
            "6be50ad8a8b445d2802381b085b2a3ede5c29d353450a6a21f16b2fefa962b6e",
        ),
    ),
    Jar(
        # The full bundle: the small per-service SDK jars are not enough for S3A.
        "aws-java-sdk-bundle-1.11.901.jar",
        Maven("com.amazonaws:aws-java-sdk-bundle:1.11.901"),
        PyPIMember(
            "sagemaker-pyspark==1.4.5",
            "sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-bundle-1.11.901.jar",
            "b87175b32a16544cc1b37cf40390eb375833e62bed67f8ce6cde4b7ad6429ead",
        ),
    ),
    Jar(
        # The Iceberg JDBC catalog and Spark's JDBC reads need the driver.
        "postgresql.jar",
        Maven("org.postgresql:postgresql:42.5.5"),
        DebianFile(
            "libpostgresql-jdbc-java",
            "/usr/share/java/postgresql.jar",
            "e68b153660caa7f47505d323829e995bd84fec7a30d2160f3ca272f774569a22",
        ),
    ),
)

KAFKA_JARS: tuple[Jar, ...] = (
    Jar(
        f"spark-sql-kafka-0-10_{SCALA}-{SPARK_VERSION}.jar",
        Maven(f"org.apache.spark:spark-sql-kafka-0-10_{SCALA}:{SPARK_VERSION}"),
        None,
        optional=True,
    ),
    Jar(
        f"spark-token-provider-kafka-0-10_{SCALA}-{SPARK_VERSION}.jar",
        Maven(f"org.apache.spark:spark-token-provider-kafka-0-10_{SCALA}:{SPARK_VERSION}"),
        None,
        optional=True,
    ),
    # The client version Spark 3.5 is built against (4.x clients break the connector).
    Jar("kafka-clients-3.4.1.jar", Maven("org.apache.kafka:kafka-clients:3.4.1"), None, optional=True),
    Jar(
        "commons-pool2-2.11.1.jar",
        Maven("org.apache.commons:commons-pool2:2.11.1"),
        None,
        optional=True,
    ),
)

ALL_JARS = CORE_JARS + KAFKA_JARS
LOCK_FILE = "jars.lock.json"
KAFKA_CONNECTOR = KAFKA_JARS[0].name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
            src = tf.extractfile(member)
            if src is None:
                raise StackError(f"{member} not found in {archive.name}")
            with src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


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


def provision(target_dir: Path, maven_repo: str | None, log=print) -> dict[str, str]:
    """Make `target_dir` hold every core jar (and the Kafka jars when Maven is reachable).

    Idempotent: a jar already present with its recorded checksum is kept. Returns name -> SHA-256
    and writes them to ``jars.lock.json`` in the directory.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    lock_path = target_dir / LOCK_FILE
    lock: dict[str, str] = json.loads(lock_path.read_text()) if lock_path.exists() else {}
    use_maven = bool(maven_repo) and maven_reachable(maven_repo)  # type: ignore[arg-type]
    log(f"Maven repository {'reachable' if use_maven else 'not reachable'}: "
        f"{'Maven coordinates' if use_maven else 'registry packages'} first")

    missing = [j for j in ALL_JARS if not _present(j, target_dir, lock)]
    from_registry = []
    for jar in missing:
        path = target_dir / jar.name
        if use_maven and jar.maven is not None:
            try:
                _from_maven(jar, maven_repo, path)  # type: ignore[arg-type]
                log(f"  {jar.name}: from Maven {jar.maven.coordinate}")
                continue
            except (OSError, StackError) as exc:
                log(f"  {jar.name}: Maven failed ({exc}); trying the registry")
        if jar.registry is not None:
            from_registry.append(jar)
        elif jar.optional:
            log(f"  {jar.name}: no source reachable, left out (optional)")
        else:
            raise StackError(f"{jar.name}: no reachable source")
    if from_registry:
        _from_registry(from_registry, target_dir)
        for jar in from_registry:
            _check_pinned(jar, target_dir / jar.name)
            log(f"  {jar.name}: from {jar.registry.__class__.__name__} "
                f"{getattr(jar.registry, 'requirement', getattr(jar.registry, 'package', ''))}")

    lock = {j.name: sha256_of(target_dir / j.name) for j in ALL_JARS if (target_dir / j.name).exists()}
    lock_path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock


def _present(jar: Jar, target_dir: Path, lock: dict[str, str]) -> bool:
    path = target_dir / jar.name
    if not path.exists() or jar.name not in lock:
        return False
    # Size check is cheap; the full hash is checked when the lock was written.
    return path.stat().st_size > 0


def jar_paths(target_dir: Path) -> list[Path]:
    """The provisioned jars to put on Spark's classpath, or a clear error if not provisioned."""
    missing = [j.name for j in CORE_JARS if not (target_dir / j.name).is_file()]
    if missing:
        raise StackError(
            f"Spark jars missing from {target_dir}: {', '.join(missing)}; run `make jars` "
            "(python -m tickerlake.jars)"
        )
    return [target_dir / j.name for j in ALL_JARS if (target_dir / j.name).is_file()]


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.settings import SparkSettings  # jars need no other (secret) settings

    spark = SparkSettings()
    parser = argparse.ArgumentParser(prog="python -m tickerlake.jars", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=spark.jars_dir)
    parser.add_argument("--no-maven", action="store_true", help="use only the registry packages")
    args = parser.parse_args(argv)
    lock = provision(args.dir, None if args.no_maven else spark.maven_repo)
    for name, digest in sorted(lock.items()):
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
