"""One micro-batch, without any I/O: decode, validate, features in arrival order, one model call, outputs.

The service hands consumed messages in and produces what comes out; this
module knows nothing of consumers or producers, so the whole data path is
unit-tested without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features import FeatureStore, FeatureValueError
from features.store import check_values
from models import BatchScorer
from models.drift import DriftEvent
from stream.codec import AvroCodec, AvroEncoder
from stream.deadletter import DeadLetter, InputMessage, dead_letter_for
from stream.exceptions import InvalidRecordError, RecordError
from stream.quality import QualityTracker

__all__ = ["Prediction", "BatchResult", "BatchProcessor"]


@dataclass(frozen=True)
class Prediction:
    """An encoded prediction, ready to produce, with what latency tracking needs."""

    key: bytes
    value: bytes
    event_time_ms: int


@dataclass
class BatchResult:
    """Everything one batch produced, and the offsets to commit once it is acknowledged."""

    predictions: list[Prediction] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    drift_events: list[DriftEvent] = field(default_factory=list)
    labels: int = 0  # label messages consumed
    per_topic: dict[str, int] = field(default_factory=dict)  # input events consumed, by topic
    label_dead_letters: int = 0  # of the dead letters, how many were label messages
    # (topic, partition) -> next offset to read: last offset in the batch + 1
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    model_seconds: float = 0.0

    @property
    def consumed(self) -> int:
        """Input events consumed: scored or dead-lettered (labels not included)."""
        return len(self.predictions) + len(self.dead_letters) - self.label_dead_letters



class BatchProcessor:
    """Turns consumed messages into predictions and dead letters."""

    def __init__(
        self,
        codec: AvroCodec,
        store: FeatureStore,
        scorer: BatchScorer,
        encoder: AvroEncoder,
        key_field: str,
        time_field: str,
        quality: QualityTracker | None = None,
        labels_topic: str | None = None,
    ) -> None:
        self.codec = codec
        self.store = store
        self.scorer = scorer
        self.encoder = encoder
        self.key_field = key_field
        self.time_field = time_field
        self.fields = store.spec.fields
        self.model_name = scorer.artifact.name
        self.model_version = scorer.artifact.version
        self.quality = quality
        self.labels_topic = labels_topic

    def process(self, messages: Sequence[InputMessage]) -> BatchResult:
        """Process ``messages`` in order; bad ones become dead letters, the rest are scored."""
        result = BatchResult()
        accepted: list[tuple[InputMessage, str, int]] = []
        records: list[dict[str, Any]] = []
        inputs: list[list[Any]] = []
        where: list[tuple[str, int, int]] = []  # (topic, partition, offset) of each accepted message
        for msg in messages:
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            result.next_offsets[(topic, partition)] = offset + 1
            if topic != self.labels_topic:
                result.per_topic[topic] = result.per_topic.get(topic, 0) + 1
            try:
                if topic == self.labels_topic:
                    result.labels += 1
                    assert self.quality is not None
                    result.drift_events.extend(self.quality.label(msg))
                    continue
                record = self.codec.decode(msg.value())
                key, ts, values = self._validate(record)
            except RecordError as exc:
                result.dead_letters.append(dead_letter_for(msg, exc, exc.stage))
                result.label_dead_letters += topic == self.labels_topic
                continue
            accepted.append((msg, key, ts))
            records.append(record)
            inputs.append(values)
            where.append((topic, partition, offset))
        if not accepted:
            return result
        values = np.asarray(inputs, dtype=np.float64)  # checked finite by _validate
        times = [ts for _, _, ts in accepted]
        features = self.store.update_arrays([key for _, key, _ in accepted], np.asarray(times, dtype=np.int64), values)
        started = time.perf_counter()
        scores = self.scorer.score(features)
        result.model_seconds = time.perf_counter() - started
        result.predictions = self._encode(accepted, scores)
        if self.quality is not None:
            result.drift_events.extend(self.quality.observe(where, records, times, values, features, scores))
        return result

    def _validate(self, record: dict[str, Any]) -> tuple[str, int, list[Any]]:
        key = record.get(self.key_field)
        if key is None or key == "":
            raise InvalidRecordError(f"key field {self.key_field!r} is missing or empty")
        ts = record.get(self.time_field)
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise InvalidRecordError(f"time field {self.time_field!r} is {ts!r}, not epoch milliseconds")
        values = [record.get(f) for f in self.fields]
        try:
            check_values(self.fields, values)
        except FeatureValueError as exc:
            raise InvalidRecordError(str(exc)) from exc
        return str(key), ts, values

    def _encode(self, accepted: list[tuple[InputMessage, str, int]], scores: Any) -> list[Prediction]:
        now_ms = int(time.time() * 1000)
        classes = scores.classes
        proba = scores.probabilities
        out: list[Prediction] = []
        encode = self.encoder.encode
        for i, (msg, key, ts) in enumerate(accepted):
            record = {
                "key": key,
                "event_time": ts,
                "source_topic": msg.topic(),
                "source_partition": msg.partition(),
                "source_offset": msg.offset(),
                "model_name": self.model_name,
                "model_version": self.model_version,
                "score": float(scores.score[i]),
                "label": scores.label[i] if scores.label is not None else None,
                "probabilities": (
                    [{"label": c, "probability": float(p)} for c, p in zip(classes, proba[i])]
                    if proba is not None else []
                ),
                "scored_at": now_ms,
            }
            out.append(Prediction(key=key.encode(), value=encode(record), event_time_ms=ts))
        return out
