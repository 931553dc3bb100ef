"""The producer side: every output is produced here and its delivery tracked until acknowledged."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream.config import redact
from stream.exceptions import DeliveryError, KafkaFatalError
from stream.types import Headers, Rejected

__all__ = ["PRODUCER_DEFAULTS", "RECORD_ERRORS", "PredictionSink", "Rejected"]

logger = logging.getLogger(__name__)

# acks=all + idempotence: an acknowledged output survives a broker failover and
# retries never duplicate it. lz4 and a short linger batch outputs cheaply.
# murmur2_random places keys as the Java clients do, so a key lands in the
# same partition whoever produced it.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "compression.type": "lz4",
    "partitioner": "murmur2_random",
}
# The sink asks for delivery reports of failures only: success is known per
# batch when flush() finds nothing left in flight, which spares a Python
# callback per output.
SINK_DEFAULTS: dict[str, Any] = {**PRODUCER_DEFAULTS, "delivery.report.only.error": True}
# librdkafka's own limit on delivering a message (retries included), when the
# settings do not set message.timeout.ms. flush() waits that long, plus a
# margin: an output is either acknowledged or reported failed by then, so a
# broker that is away for a while delays the batch rather than failing it.
MESSAGE_TIMEOUT_MS = 300_000
FLUSH_MARGIN_S = 5.0
# Errors that are about one record, not the cluster: the record is refused for
# good (too large, invalid, against a topic policy), and the others go on.
RECORD_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_MSG, KafkaError.INVALID_RECORD,
    KafkaError.INVALID_TIMESTAMP, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.POLICY_VIOLATION,
    KafkaError._INVALID_ARG,
})



class PredictionSink:
    """Produces outputs and knows when all of them are acknowledged."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._settings = {**SINK_DEFAULTS, **settings}
        self._producer = Producer({**self._settings, "error_cb": self._on_error, "on_delivery": self._on_delivery})
        self._failures: list[str] = []
        self._rejected: list[Rejected] = []
        self._fatal: KafkaError | None = None
        self.flush_timeout_s = int(self._settings.get("message.timeout.ms", MESSAGE_TIMEOUT_MS)) / 1000 + FLUSH_MARGIN_S
        logger.debug("producer settings %s", redact(self._settings))

    @property
    def settings(self) -> dict[str, Any]:
        """The settings this sink was made with (to make another like it)."""
        return dict(self._settings)

    @property
    def producer(self) -> Producer:
        """The confluent-kafka producer (thread-safe), for transactions and metadata requests."""
        return self._producer

    def reachable(self, topic: str, timeout_s: float) -> bool:
        """Whether the cluster answers a metadata request for ``topic`` (safe from any thread)."""
        try:
            return bool(self._producer.list_topics(topic, timeout=timeout_s).brokers)
        except KafkaException:
            return False

    def discard_failures(self) -> None:
        """Forget the delivery failures seen so far (an aborted transaction takes them back).

        Rejected records stay for ``take_rejected``: the batch is scored again without them.
        """
        self._failures = []

    def take_rejected(self) -> list[Rejected]:
        """The outputs refused because of the record itself since the last call (serves delivery reports)."""
        self._producer.poll(0)
        rejected, self._rejected = self._rejected, []
        return rejected

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: Headers | None = None, partition: int = -1) -> None:
        """Queue one output (to ``partition``, or where the partitioner puts its key); ``flush`` awaits it."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, partition=partition)
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain, then retry
            except KafkaException as exc:
                self._refused(topic, key, value, headers, exc)
                return

    def send_many(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes | None],
                  headers: Headers | None = None, partition: int = -1) -> None:
        """Queue outputs in order; ``send`` for each, without its per-call overhead."""
        # Positional arguments only where there are no headers: parsing a keyword cost ~0.4 us a record.
        produce = (self._producer.produce if headers is None
                   else functools.partial(self._producer.produce, headers=headers))
        for key, value in zip(keys, values):
            try:
                produce(topic, value, key, partition)
            except (BufferError, KafkaException):
                self.send(topic, key, value, headers, partition)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every output sent so far is acknowledged; DeliveryError if one is not."""
        if timeout_s is None:
            timeout_s = self.flush_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            self._raise_fatal()
            left = deadline - time.monotonic()
            remaining = self._producer.flush(max(0.0, min(left, 1.0)))
            if remaining == 0:
                break
            if left <= 0:
                raise DeliveryError(f"{remaining} outputs not acknowledged within {timeout_s:.0f}s")
        self._raise_failures()

    def settled(self) -> bool:
        """Whether every output sent so far is acknowledged, without waiting; raises as ``flush`` does."""
        self._raise_fatal()
        self._producer.poll(0)  # serves the failures' delivery reports
        self._raise_failures()
        return len(self._producer) == 0

    def close(self) -> None:
        """Flush what is queued; errors are logged, since the offsets were not committed anyway."""
        try:
            self.flush(timeout_s=10.0)
        except (DeliveryError, KafkaFatalError) as exc:
            logger.error("outputs lost at close (their inputs stay uncommitted): %s", exc)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaFatalError(f"producer fatal error: {self._fatal.str()}")

    def _raise_failures(self) -> None:
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{len(failures)} outputs failed; first: {failures[0]}")

    def _refused(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None,
                 exc: KafkaException) -> None:
        """produce() refused a record at once: about the record (kept for the caller), or not (raised)."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None or err.code() not in RECORD_ERRORS:
            raise DeliveryError(f"cannot produce to {topic}: {exc}") from exc
        self._rejected.append(Rejected(topic, key, value, list(headers or []), f"refused by the producer: {err.str()}"))

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        if err.code() in RECORD_ERRORS:
            headers = msg.headers() or []
            self._rejected.append(Rejected(msg.topic() or "", msg.key(), msg.value(),
                                           list(headers.items()) if isinstance(headers, dict) else list(headers),
                                           f"refused by the broker: {err.str()}"))
        else:
            self._failures.append(f"{msg.topic()}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        logger.warning("producer: %s", err.str())
