"""Producing generated events to Kafka at a target rate, keyed by entity."""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from stream.avro.codec import AvroEncoder
from stream.exceptions import DeliveryError
from stream.kafka.sink import PRODUCER_DEFAULTS

__all__ = ["SimulationResult", "produce_events"]

logger = logging.getLogger(__name__)

# Progress is reported at most this often.
PROGRESS_EVERY_S = 2.0
# How long to wait for the producer to connect and, when idempotent, to get its
# producer id, before the clock starts.
READY_TIMEOUT_S = 10.0
# Statistics interval used to see the idempotent producer's state (librdkafka
# has no other way to tell when its producer id is assigned).
READY_STATS_MS = 20
# What --bad-every sends instead of an event: no wire format decodes it.
BAD_VALUE = b"\xffnot an Avro record"


@dataclass(frozen=True)
class SimulationResult:
    """What was produced, and where each event landed."""

    produced: int
    seconds: float
    # (partition, offset) per event, in generation order, when asked for
    positions: list[tuple[int, int]] | None = None


def produce_events(
    settings: Mapping[str, Any],
    topic: str,
    events: Iterable[tuple[dict[str, Any], int]],
    encoder: AvroEncoder,
    key_field: str,
    rate: float = 0.0,
    total: int | None = None,
    keep_positions: bool = False,
    progress: Callable[[str], None] | None = None,
    bad_every: int = 0,
) -> SimulationResult:
    """Encode and produce every event; ``rate`` events/s (0: as fast as possible); wait for all acks.

    With ``bad_every`` N > 0, every Nth value is replaced by bytes that are not
    Avro, to show and test dead-lettering.
    """
    producer = _ready_producer(topic, {**PRODUCER_DEFAULTS, **settings})
    failures: list[str] = []
    positions: list[tuple[int, int]] = []

    def on_delivery(index: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(err.str())
        elif keep_positions:
            positions[index] = (msg.partition() or 0, msg.offset() or 0)  # set on every delivered message

    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.monotonic()
    next_report = started + PROGRESS_EVERY_S
    n = 0
    for record, _label in events:
        if rate > 0:
            ahead = started + n / rate - time.monotonic()
            if ahead > 0.001:
                time.sleep(ahead)
        if keep_positions:
            positions.append((-1, -1))
        value = BAD_VALUE if bad_every and n % bad_every == bad_every - 1 else encoder.encode(record)
        index = n
        while True:
            try:
                producer.produce(
                    topic, value=value, key=str(record[key_field]).encode(),
                    on_delivery=functools.partial(on_delivery, index),
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        n += 1
        now = time.monotonic()
        if now >= next_report:
            shown = f"/{total}" if total else ""
            say(f"simulate: {n}{shown} events to {topic}, {n / (now - started):,.0f} events/s")
            next_report = now + PROGRESS_EVERY_S
    remaining = producer.flush(60.0)
    seconds = time.monotonic() - started
    if remaining or failures:
        raise DeliveryError(
            f"{remaining} events unacknowledged and {len(failures)} failed"
            + (f"; first failure: {failures[0]}" if failures else "")
        )
    say(f"simulate: produced {n} events to {topic} in {seconds:.1f}s")
    return SimulationResult(produced=n, seconds=seconds, positions=positions if keep_positions else None)


def _ready_producer(topic: str, settings: dict[str, Any]) -> Producer:
    """A producer that is connected, knows ``topic``'s partitions and, if idempotent, has its producer id.

    Live event times are the wall clock at generation, so the first events
    should not carry the producer's own start-up as latency: an idempotent
    producer holds every message until the broker assigns it a producer id,
    which took from 10 to 500 ms on a local broker.
    """
    ready = threading.Event()
    idempotent = str(settings.get("enable.idempotence", False)).lower() == "true"

    def on_stats(raw: str) -> None:
        if not ready.is_set() and json.loads(raw).get("eos", {}).get("idemp_state") == "Assigned":
            ready.set()

    if idempotent and "stats_cb" not in settings:
        settings = {**settings, "statistics.interval.ms": READY_STATS_MS, "stats_cb": on_stats}
    else:
        ready.set()
    producer = Producer(settings)
    producer.list_topics(topic, timeout=READY_TIMEOUT_S)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.is_set() and time.monotonic() < deadline:
        producer.poll(0.01)
    if not ready.is_set():
        logger.warning("no producer id after %.0fs; starting anyway", READY_TIMEOUT_S)
    return producer
