"""Create the Kafka topics with explicit partition counts, idempotently."""
from __future__ import annotations

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from tickerlake.core.clients import kafka_admin
from tickerlake.core.names import Topic
from tickerlake.core.settings import KafkaSettings


def topic_partitions(kafka: KafkaSettings) -> dict[Topic, int]:
    # The ticks topic is keyed by symbol, so its partition count bounds the stream's parallelism.
    # There is no dead-letter topic: the streaming job quarantines malformed events in the lake.
    return {Topic.TICKS: kafka.ticks_partitions}


def ensure_topics(kafka: KafkaSettings) -> dict[str, str]:
    """Create each missing topic; returns topic -> "created" | "exists (N partitions)"."""
    admin = kafka_admin(kafka)
    try:
        existing = set(admin.list_topics())
        outcome = {}
        for topic, partitions in topic_partitions(kafka).items():
            if topic.value not in existing:
                try:
                    admin.create_topics([NewTopic(topic.value, num_partitions=partitions,
                                                  replication_factor=1)])
                    outcome[topic.value] = f"created ({partitions} partitions)"
                    continue
                except TopicAlreadyExistsError:
                    pass
            described = admin.describe_topics([topic.value])[0]
            outcome[topic.value] = f"exists ({len(described['partitions'])} partitions)"
        return outcome
    finally:
        admin.close()
