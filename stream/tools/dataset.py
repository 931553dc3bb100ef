"""A training set read back from the stream: the input topics over a range, joined with the labels topic.

Features come from the same ``FeatureStore`` the scorer runs, fed each
partition in offset order. A key lives in one partition, so every key sees
its events in the order the scorer saw them, and an event's features are
bit for bit the scorer's when both started from the same offset. Windows
start empty at the range's first offset: events before it are not read.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from features import compute_features
from stream.avro.codec import AvroCodec, SchemaSource
from stream.config import ServiceConfig, read_schema
from stream.exceptions import ConfigError, RecordError
from stream.kafka.admin import admin_settings
from stream.pipeline.quality import event_id

__all__ = ["StreamRange", "TopicTrainingSet", "read_training_set"]

logger = logging.getLogger(__name__)

# How long to wait for one poll before deciding a partition has nothing more.
POLL_S = 1.0
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class StreamRange:
    """Which part of the input topics to train on: offsets (per partition) or event-time milliseconds."""

    from_offset: int | None = None
    to_offset: int | None = None  # exclusive
    from_time_ms: int | None = None
    to_time_ms: int | None = None  # exclusive


@dataclass
class TopicTrainingSet:
    """Labelled events in event-time order, their features, and what was read."""

    features: np.ndarray
    labels: list[Any]
    event_times: np.ndarray
    inputs: np.ndarray  # the raw feature fields, for the reference statistics
    ids: list[str] = field(default_factory=list)  # each row's event id (the labels' id)
    # (topic, partition) -> [first offset read, next offset after the last]
    offsets: dict[str, list[int]] = field(default_factory=dict)
    events: int = 0
    unlabelled: int = 0
    undecodable: int = 0


def read_training_set(config: ServiceConfig, span: StreamRange, schema_source: SchemaSource | None = None,
                      progress: bool = True) -> TopicTrainingSet:
    """Read ``span`` of every input partition and the whole labels topic; the labelled events' features."""
    labels_topic = config.labels.topic
    if labels_topic is None:
        raise ConfigError("train --from-topics needs labels.topic: the labels to train on come from it")
    codec_cfg = config.codec
    if codec_cfg.format == "confluent" and schema_source is None:
        from stream.kafka.registry import RegistrySchemaSource

        assert codec_cfg.schema_registry_url is not None
        schema_source = RegistrySchemaSource(codec_cfg.schema_registry_url, codec_cfg.schema_registry)
    codec = AvroCodec(config.reader_schema, codec_cfg.format,
                      writer_schema=config.writer_schema if codec_cfg.format == "raw" else None,
                      schema_source=schema_source)
    label_codec = AvroCodec(read_schema(config.labels.schema, "labels.schema"), codec_cfg.format,
                            schema_source=schema_source)
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers,
                         **admin_settings(config.kafka.consumer), "group.id": "streamscore-train",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        truth = _labels(consumer, labels_topic, label_codec)
        id_field = config.labels.id_field
        rows: list[dict[str, Any]] = []
        ids: list[str] = []
        out = TopicTrainingSet(np.empty((0, 0)), [], np.empty(0, dtype=np.int64), np.empty((0, 0)))
        for topic in config.kafka.input_topics:
            for tp, start, end in _ranges(consumer, topic, span):
                out.offsets[f"{topic}/{tp.partition}"] = [start, end]
                for offset, value in _read(consumer, tp, start, end, progress):
                    try:
                        record = codec.decode(value)
                    except RecordError:
                        out.undecodable += 1
                        continue
                    if span.from_time_ms is not None and record[codec_cfg.time_field] < span.from_time_ms:
                        continue
                    if span.to_time_ms is not None and record[codec_cfg.time_field] >= span.to_time_ms:
                        continue
                    rows.append(record)
                    ids.append(str(record[id_field]) if id_field else event_id(topic, tp.partition, offset))
    finally:
        consumer.close()
    out.events = len(rows)
    # the scorer's feature code, each partition's events in offset order
    features = compute_features(config.features, rows, codec_cfg.key_field, codec_cfg.time_field)
    keep = [i for i, event in enumerate(ids) if event in truth]
    out.unlabelled = len(rows) - len(keep)
    times = np.asarray([rows[i][codec_cfg.time_field] for i in keep], dtype=np.int64)
    order = np.argsort(times, kind="stable")  # time-ordered, so the held-out part is the latest
    chosen = np.asarray(keep, dtype=np.int64)[order]
    out.features = features[chosen] if len(chosen) else np.empty((0, config.features.n_features))
    out.labels = [truth[ids[i]] for i in chosen.tolist()]
    out.ids = [ids[i] for i in chosen.tolist()]
    out.event_times = times[order]
    out.inputs = np.asarray([[rows[i][f] for f in config.features.fields] for i in chosen.tolist()], dtype=float)
    logger.info("training set: %d events read, %d labelled, %d without a label, %d undecodable",
                out.events, len(chosen), out.unlabelled, out.undecodable)
    return out


def _labels(consumer: Consumer, topic: str, codec: AvroCodec) -> dict[str, Any]:
    """id -> label, over the whole labels topic (the last label of an id wins)."""
    truth: dict[str, Any] = {}
    for tp, start, end in _ranges(consumer, topic, StreamRange()):
        for _offset, value in _read(consumer, tp, start, end, progress=False):
            try:
                record = codec.decode(value)
            except RecordError:
                continue
            if record.get("id") and record.get("label") is not None:
                truth[str(record["id"])] = record["label"]
    return truth


def _ranges(consumer: Consumer, topic: str, span: StreamRange) -> list[tuple[TopicPartition, int, int]]:
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
            start = max(start, _offset_for_time(consumer, tp, span.from_time_ms, high))
        if span.to_time_ms is not None:
            end = min(end, _offset_for_time(consumer, tp, span.to_time_ms, high))
        out.append((tp, start, max(start, end)))
    return out


def _offset_for_time(consumer: Consumer, tp: TopicPartition, ms: int, high: int) -> int:
    """The first offset whose record timestamp is at or after ``ms`` (the end when none is)."""
    try:
        (found,) = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, ms)], timeout=10.0)
    except KafkaException as exc:
        raise ConfigError(f"cannot look up offsets by time in {tp.topic}: {exc}") from exc
    return high if found.offset in (OFFSET_END, -1) else int(found.offset)


def _read(consumer: Consumer, tp: TopicPartition, start: int, end: int, progress: bool) -> list[tuple[int, bytes]]:
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
