"""A live feed with ground truth: events at a rate, and each event's label a little after the event is delivered.

Labels name their event by ``<topic>/<partition>/<offset>``, as the scorer's
label join expects, so they can only be written once the event's offset is
known: after its delivery report. For demos, tests and benchmarks of the
model lifecycle.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from schemas import load_schema
from stream.avro.codec import AvroEncoder
from stream.exceptions import DeliveryError

__all__ = ["LabelledFeed"]

logger = logging.getLogger(__name__)

# Events between two progress lines.
PROGRESS_EVERY = 20_000


class LabelledFeed:
    """Produces ``events`` at ``rate``/s to ``topic`` and each label ``label_delay_s`` after delivery to ``labels_topic``."""

    def __init__(self, bootstrap: str, topic: str, labels_topic: str, events: Iterable[tuple[dict[str, Any], Any]],
                 key_field: str, rate: float, label_delay_s: float = 0.5, schema: str = "sensor_reading",
                 progress: Callable[[str], None] | None = None) -> None:
        self.topic, self.labels_topic = topic, labels_topic
        self.events, self.key_field = events, key_field
        self.rate, self.label_delay_s = rate, label_delay_s
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
        self.encoder = AvroEncoder(load_schema(schema))
        self.label_encoder = AvroEncoder(load_schema("label"))
        self._delivered: collections.deque[tuple[float, str, Any]] = collections.deque()
        self.progress = progress
        self.failures: list[str] = []
        self.produced = 0
        self.thread = threading.Thread(target=self.run, name="labelled-feed")

    def start(self) -> LabelledFeed:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join()
        if self.failures:
            raise DeliveryError(f"{len(self.failures)} events or labels not delivered; first: {self.failures[0]}")

    def run(self) -> None:
        """Produce everything, then flush: events and labels."""
        started = time.monotonic()
        for i, (record, truth) in enumerate(self.events):
            ahead = started + i / self.rate - time.monotonic()
            if ahead > 0.001:
                time.sleep(ahead)
            self.producer.produce(self.topic, self.encoder.encode(record), key=str(record[self.key_field]).encode(),
                                  on_delivery=functools.partial(self._on_delivery, truth))
            self.producer.poll(0)
            self._labels(time.monotonic() - self.label_delay_s)
            self.produced = i + 1
            if self.progress is not None and self.produced % PROGRESS_EVERY == 0:
                self.progress(f"feed: {self.produced:,} events to {self.topic}")
        self.producer.flush(30)
        self._labels(float("inf"))
        if self.producer.flush(30):
            self.failures.append("labels still unacknowledged after 30 s")

    def _on_delivery(self, truth: Any, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append(err.str())
            return
        self._delivered.append((time.monotonic(), f"{msg.topic()}/{msg.partition()}/{msg.offset()}", truth))

    def _labels(self, until: float) -> None:
        while self._delivered and self._delivered[0][0] <= until:
            _, event, truth = self._delivered.popleft()
            self.producer.produce(self.labels_topic, self.label_encoder.encode(
                {"id": event, "label": str(truth), "label_time": int(time.time() * 1000)}))
