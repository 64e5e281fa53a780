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
class LocalFolder:
    """A jar in a local folder standing in for Maven: the file whose SHA-256 is this one."""

    sha256: str


@dataclass(frozen=True)
class Jar:
    name: str  # the file name in the jars directory
    maven: Maven | None
    registry: PyPIMember | DebianFile | LocalFolder | None
    optional: bool = False  # True: left out (with a note) when no source is reachable
    marker: str = ""  # a class file only this jar holds: how the classpath is checked, by contents


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

# Spark's Kafka source and what it needs. Maven Central has them; machines that reach only the
# package registries take them from a local folder standing in for Maven (TICKERLAKE_SPARK_LOCAL_JARS_DIR,
# here ../shared/jars/spark-kafka), where a jar is the file with the pinned SHA-256, whatever its name.
# kafka-clients 3.9.1 passed every check with Spark 3.5 (4.x clients break the connector).
KAFKA_JARS: tuple[Jar, ...] = (
    Jar("spark-sql-kafka-0-10_2.12-3.5.2.jar", Maven(f"org.apache.spark:spark-sql-kafka-0-10_{SCALA}:3.5.2"),
        LocalFolder("f42493b48cb0acdd8688b0bd468ea14ebaa92d025691d71b4c342e908b9bd423"),
        marker="org/apache/spark/sql/kafka010/KafkaSourceProvider.class"),
    Jar("spark-token-provider-kafka-0-10_2.12-3.5.2.jar",
        Maven(f"org.apache.spark:spark-token-provider-kafka-0-10_{SCALA}:3.5.2"),
        LocalFolder("132383cc65b876495290ce99f788b84ae18567043c48d4bd9cdba7136aa81b93"),
        marker="org/apache/spark/kafka010/KafkaTokenUtil.class"),
    Jar("kafka-clients-3.9.1.jar", Maven("org.apache.kafka:kafka-clients:3.9.1"),
        LocalFolder("7568b998572d256f0b7bc0afdc1b7a2588b8b08415c62ce314c864a6851ae9d9"),
        marker="org/apache/kafka/clients/consumer/KafkaConsumer.class"),
    Jar("commons-pool2-2.11.1.jar", Maven("org.apache.commons:commons-pool2:2.11.1"),
        LocalFolder("ea0505ee7515e58b1ac0e686e4d1a5d9f7d808e251a61bc371aa0595b9963f83"),
        marker="org/apache/commons/pool2/ObjectPool.class"),
)

ALL_JARS = CORE_JARS + KAFKA_JARS
LOCK_FILE = "jars.lock.json"
KAFKA_CONNECTOR = KAFKA_JARS[0].maven.coordinate  # type: ignore[union-attr]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()



def jar_paths(target_dir: Path, *, strict: bool = True) -> list[Path]:
    """Every jar in the jars directory, for Spark's classpath; a clear error if a core jar is
    missing (unless not `strict`: then only those present)."""
    missing = [j.name for j in CORE_JARS if not (target_dir / j.name).is_file()]
    if missing and strict:
        raise StackError(
            f"Spark jars missing from {target_dir}: {', '.join(missing)}; run `make jars` "
            "(python -m tickerlake.dev.jars)"
        )
    return sorted(target_dir.glob("*.jar"))


def kafka_connector_missing(jars: list[Path]) -> list[str]:
    """The Kafka source's jars (by the classes they hold, whatever the files are called) that
    none of `jars` provides; empty when Spark can read Kafka."""
    import zipfile

    wanted = {j.marker: j.maven.coordinate for j in KAFKA_JARS if j.maven}  # type: ignore[union-attr]
    for path in jars:
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (OSError, zipfile.BadZipFile):
            continue
        for marker in [m for m in wanted if m in names]:
            del wanted[marker]
    return sorted(wanted.values())
