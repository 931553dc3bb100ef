"""Start-up checks against the cluster, before anything is created: client settings, reachability, input topics.

Each failure is one line: librdkafka's own words for a bad setting, how
long the cluster was tried for when it does not answer (its clients' log
lines are kept quiet meanwhile), and which input topics are missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from stream.exceptions import BrokerUnreachableError, ConfigError

__all__ = ["check_settings", "missing_topics", "probe"]

logger = logging.getLogger(__name__)

# librdkafka's syslog-style log level for the probing client: 0 logs nothing
# but emergencies, so a cluster that does not answer costs one line, not hundreds.
QUIET_LOG_LEVEL = 0


def check_settings(producer: Mapping[str, Any], consumer: Mapping[str, Any]) -> None:
    """ConfigError naming the table and librdkafka's reason if a client refuses its settings."""
    for where, make, settings in (("kafka.producer", Producer, producer), ("kafka.consumer", Consumer, consumer)):
        # No bootstrap servers: the client checks its settings and connects nowhere, so that it is
        # destroyed idle, here, rather than mid-handshake by a later garbage collection.
        inert = {k: v for k, v in settings.items() if k != "bootstrap.servers"}
        try:
            client = make({**inert, "log_level": QUIET_LOG_LEVEL})
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else exc
            text = err.str() if isinstance(err, KafkaError) else str(err)
            raise ConfigError(f"[{where}] is refused by librdkafka: {text}") from None
        except (TypeError, ValueError) as exc:  # a value of the wrong type
            raise ConfigError(f"[{where}] is refused by librdkafka: {exc}") from None
        if isinstance(client, Consumer):
            client.close()
        del client


def probe(settings: Mapping[str, Any], timeout_s: float) -> set[str]:
    """The cluster's topic names; BrokerUnreachableError if no broker answers within ``timeout_s``."""
    admin = AdminClient({**settings, "log_level": QUIET_LOG_LEVEL})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else exc
        text = err.str() if isinstance(err, KafkaError) else str(err)
        raise BrokerUnreachableError(
            f"no Kafka broker at {settings.get('bootstrap.servers')} answered within {timeout_s:g} s "
            f"(kafka.connect_timeout_s): {text}; check kafka.bootstrap_servers and the [kafka.*] security "
            "settings") from None
    return {name for name, topic in metadata.topics.items() if topic.error is None}


def missing_topics(existing: set[str], wanted: Sequence[str]) -> list[str]:
    """The ``wanted`` topics the cluster does not have, in order."""
    return [t for t in wanted if t not in existing]
