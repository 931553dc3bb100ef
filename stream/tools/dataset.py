"""A training set read back from the stream: the input topics over a range, joined with the labels topic.

Features come from the same ``FeatureStore`` the scorer runs, fed each
partition in offset order. A key lives in one partition, so every key sees
its events in the order the scorer saw them, and an event's features are
bit for bit the scorer's when both started from the same offset. Windows
start empty at the range's first offset: events before it are not read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features import compute_features
from stream.avro.codec import AvroCodec, SchemaSource
from stream.config import ServiceConfig, read_schema
from stream.exceptions import ConfigError, RecordError
from stream.kafka.admin import admin_settings
from stream.kafka.registry import registry_for
from stream.pipeline.quality import event_id
from stream.tools.topics import StreamRange, partition_ranges, read_labels, read_partition, reader

__all__ = ["StreamRange", "TopicTrainingSet", "read_training_set"]

logger = logging.getLogger(__name__)


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
    schema_source = registry_for(codec_cfg, schema_source)
    codec = AvroCodec(config.reader_schema, codec_cfg.format,
                      writer_schema=config.writer_schema if codec_cfg.format == "raw" else None,
                      schema_source=schema_source)
    label_codec = AvroCodec(read_schema(config.labels.schema, "labels.schema"), codec_cfg.format,
                            schema_source=schema_source)
    consumer = reader(config.kafka.bootstrap_servers, admin_settings(config.kafka.consumer))
    try:
        truth = read_labels(consumer, labels_topic, label_codec)
        id_field = config.labels.id_field
        rows: list[dict[str, Any]] = []
        shards: list[int] = []  # each row's partition
        ids: list[str] = []
        out = TopicTrainingSet(np.empty((0, 0)), [], np.empty(0, dtype=np.int64), np.empty((0, 0)))
        for topic in config.kafka.input_topics:
            for tp, start, end in partition_ranges(consumer, topic, span):
                out.offsets[f"{topic}/{tp.partition}"] = [start, end]
                for offset, value in read_partition(consumer, tp, start, end, progress):
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
                    shards.append(tp.partition)  # the scorer's shard, whose clock expiry counts on
                    ids.append(str(record[id_field]) if id_field else event_id(topic, tp.partition, offset))
    finally:
        consumer.close()
    out.events = len(rows)
    # the scorer's feature code, each partition's events in offset order
    features = compute_features(config.features, rows, codec_cfg.key_field, codec_cfg.time_field,
                                config.state.key_ttl_ms, shards)
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
