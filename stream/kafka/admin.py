"""Topic creation at start-up, so a fresh cluster works without manual set-up."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stream.exceptions import StreamError

__all__ = ["admin_settings", "ensure_topics", "partition_counts"]

logger = logging.getLogger(__name__)

# Seconds to wait for the controller to create topics.
CREATE_TIMEOUT_S = 30.0


# librdkafka settings an admin client needs from a producer's: where and how to connect securely.
_SHARED_PREFIXES = ("security.", "sasl.", "ssl.", "client.")


def admin_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The connection and security settings of ``settings`` (a producer's), for an admin client."""
    return {k: v for k, v in settings.items() if k.startswith(_SHARED_PREFIXES)}


def ensure_topics(
    settings: Mapping[str, Any], topics: Mapping[str, int], configs: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    """Create each missing topic with the given partition count; return the names created."""
    admin = AdminClient(dict(settings))
    existing = set(_topics(admin, settings))
    missing = [name for name in topics if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=topics[name], config=dict((configs or {}).get(name, {}))) for name in missing],
        operation_timeout=CREATE_TIMEOUT_S,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=CREATE_TIMEOUT_S)
            created.append(name)
            logger.info("created topic %s with %d partitions", name, topics[name])
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StreamError(f"cannot create topic {name}: {exc}") from exc
    return created


def partition_counts(settings: Mapping[str, Any], topics: list[str]) -> dict[str, int]:
    """The partition count of each of ``topics`` that exists."""
    metadata = _topics(AdminClient(dict(settings)), settings)
    return {name: len(metadata[name].partitions) for name in topics
            if name in metadata and metadata[name].error is None}


def _topics(admin: AdminClient, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The cluster's topic metadata by name; StreamError when it does not answer."""
    try:
        return admin.list_topics(timeout=CREATE_TIMEOUT_S).topics
    except KafkaException as exc:
        raise StreamError(f"cannot list topics on {settings.get('bootstrap.servers')}: {exc}") from exc

