"""Reading a range of a topic back, partition by partition, in offset order: for training and comparisons."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from stream.avro.codec import AvroCodec
from stream.exceptions import ConfigError, RecordError

__all__ = ["StreamRange", "offset_for_time", "partition_ranges", "read_labels", "read_partition", "reader"]

# How long to wait for one poll, and how long with nothing before a partition counts as stuck.
POLL_S = 1.0
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class StreamRange:
    """A part of a topic: offsets (the same in every partition) or event-time milliseconds, ends exclusive."""

    from_offset: int | None = None
    to_offset: int | None = None
    from_time_ms: int | None = None
    to_time_ms: int | None = None


def reader(bootstrap_servers: str, settings: dict[str, Any]) -> Consumer:
    """A consumer for assigned reads: no group offsets committed, committed transactions only."""
    return Consumer({"bootstrap.servers": bootstrap_servers, **settings, "group.id": "streamscore-reader",
                     "enable.auto.commit": False, "isolation.level": "read_committed"})


def read_labels(consumer: Consumer, topic: str, codec: AvroCodec) -> dict[str, Any]:
    """id -> label, over the whole labels topic (the last label of an id wins)."""
    truth: dict[str, Any] = {}
    for tp, start, end in partition_ranges(consumer, topic, StreamRange()):
        for _offset, value in read_partition(consumer, tp, start, end, progress=False):
            try:
                record = codec.decode(value)
            except RecordError:
                continue
            if record.get("id") and record.get("label") is not None:
                truth[str(record["id"])] = record["label"]
    return truth


def partition_ranges(consumer: Consumer, topic: str, span: StreamRange) -> list[tuple[TopicPartition, int, int]]:
    """(partition, first offset, end offset) of ``topic`` within ``span``."""
    metadata = consumer.list_topics(topic, timeout=10.0).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise ConfigError(f"topic {topic} does not exist on {consumer}")
    out = []
    for partition in sorted(metadata.partitions):
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=10.0)
        start, end = low, high
        if span.from_offset is not None:
            start = max(low, span.from_offset)
        if span.to_offset is not None:
            end = min(high, span.to_offset)
        if span.from_time_ms is not None:
            start = max(start, offset_for_time(consumer, tp, span.from_time_ms, high))
        if span.to_time_ms is not None:
            end = min(end, offset_for_time(consumer, tp, span.to_time_ms, high))
        out.append((tp, start, max(start, end)))
    return out


def offset_for_time(consumer: Consumer, tp: TopicPartition, ms: int, high: int) -> int:
    """The first offset whose record timestamp is at or after ``ms`` (the end when none is)."""
    try:
        (found,) = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, ms)], timeout=10.0)
    except KafkaException as exc:
        raise ConfigError(f"cannot look up offsets by time in {tp.topic}: {exc}") from exc
    return high if found.offset in (OFFSET_END, -1) else int(found.offset)


def read_partition(consumer: Consumer, tp: TopicPartition, start: int, end: int, progress: bool) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in [start, end) of one partition (transaction markers skipped)."""
    if start >= end:
        return []
    consumer.assign([TopicPartition(tp.topic, tp.partition, start)])
    out: list[tuple[int, bytes]] = []
    shown = time.monotonic()
    idle_since = time.monotonic()
    while True:
        messages = consumer.consume(num_messages=5000, timeout=POLL_S)
        for msg in messages:
            if msg.error() is not None:
                continue
            offset = msg.offset() or 0
            if offset >= end:
                consumer.unassign()
                return out
            value = msg.value()
            if value is not None:
                out.append((offset, value))
        if messages:
            idle_since = time.monotonic()
        (position,) = consumer.position([TopicPartition(tp.topic, tp.partition)])
        if position.offset >= end:  # past transaction markers too, which are never delivered
            break
        if time.monotonic() - idle_since > 10 * POLL_S:
            raise ConfigError(f"{tp.topic}[{tp.partition}]: nothing to read at offset {position.offset} "
                              f"for {10 * POLL_S:.0f}s, before the end of the range ({end})")
        if progress and time.monotonic() - shown > PROGRESS_EVERY_S:
            shown = time.monotonic()
            print(f"train: {tp.topic}[{tp.partition}] {len(out):,} records read", file=sys.stderr, flush=True)
    consumer.unassign()
    return out
