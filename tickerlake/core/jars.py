"""The Spark jars the lake's session needs: names, Maven coordinates and pinned checksums.

The one manifest: the Spark session builder puts `jar_paths()` on the classpath, the
SparkSubmitOperator passes the same list, and `python -m tickerlake.dev.jars` provisions them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tickerlake.core.errors import StackError

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



def jar_paths(target_dir: Path, *, strict: bool = True) -> list[Path]:
    """The provisioned jars to put on Spark's classpath; a clear error if a core jar is missing
    (unless not `strict`: then only those present)."""
    missing = [j.name for j in CORE_JARS if not (target_dir / j.name).is_file()]
    if missing and strict:
        raise StackError(
            f"Spark jars missing from {target_dir}: {', '.join(missing)}; run `make jars` "
            "(python -m tickerlake.dev.jars)"
        )
    return [target_dir / j.name for j in ALL_JARS if (target_dir / j.name).is_file()]
