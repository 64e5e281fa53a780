"""One decision of the stream's source, shared by the job and its supervisor."""
from __future__ import annotations

import shutil

import pytest

from tickerlake.core.errors import ConfigError
from tickerlake.core.jars import CORE_JARS, KAFKA_CONNECTOR
from tickerlake.core.settings import SparkSettings, StreamSettings, StreamSource
from tickerlake.core.spark import resolve_stream_source


def _with(settings, tmp_path, source: StreamSource, *, connector: bool):
    jars = tmp_path / "jars"
    jars.mkdir(exist_ok=True)
    for jar in CORE_JARS:
        (jars / jar.name).write_bytes(b"")
    if connector:
        shutil.copyfile(settings.spark.jars_dir / CORE_JARS[3].name, jars / KAFKA_CONNECTOR)
    return settings.model_copy(update={"spark": SparkSettings(jars_dir=jars),
                                       "stream": StreamSettings(source=source)})


@pytest.mark.parametrize("connector", [True, False])
def test_auto_is_kafka_exactly_when_the_connector_jar_is_provisioned(settings, tmp_path, connector):
    chosen = resolve_stream_source(_with(settings, tmp_path, StreamSource.AUTO, connector=connector))
    assert chosen is (StreamSource.KAFKA if connector else StreamSource.LANDING)


def test_an_explicit_source_is_kept(settings, tmp_path):
    assert resolve_stream_source(_with(settings, tmp_path, StreamSource.LANDING, connector=True)) \
        is StreamSource.LANDING
    assert resolve_stream_source(_with(settings, tmp_path, StreamSource.KAFKA, connector=True)) \
        is StreamSource.KAFKA


def test_kafka_without_the_connector_stops_with_one_line_naming_the_setting(settings, tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_stream_source(_with(settings, tmp_path, StreamSource.KAFKA, connector=False))
    message = str(info.value)
    assert message.startswith("TICKERLAKE_STREAM_SOURCE=kafka but Spark's Kafka connector")
    assert "TICKERLAKE_SPARK_JARS_DIR" in message and "\n" not in message
