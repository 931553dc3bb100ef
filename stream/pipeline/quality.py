"""Model quality in the stream: drift detectors on each scored batch, and delayed labels joined to predictions."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from models.drift import DriftEvent, DriftMonitor
from models.labels import CachedPrediction, LabelJoiner
from models.scorer import Scores
from stream.avro.codec import AvroCodec
from stream.exceptions import InvalidRecordError
from stream.types import InputMessage

__all__ = ["QualityTracker", "event_id"]


def event_id(topic: str, partition: int, offset: int) -> str:
    """The default id of a scored event, which labels refer to."""
    return f"{topic}/{partition}/{offset}"


class QualityTracker:
    """Feeds drift detectors and the label joiner; either may be absent."""

    def __init__(
        self,
        monitor: DriftMonitor | None,
        model_version: str,
        joiner: LabelJoiner | None = None,
        label_codec: AvroCodec | None = None,
        id_field: str | None = None,
    ) -> None:
        self.monitor = monitor
        self.model_version = model_version
        self.joiner = joiner
        self.label_codec = label_codec
        self.id_field = id_field
        # the challenger's predictions wait for the same labels, each with the champion's beside it
        self.challenger_joiner = (LabelJoiner(joiner.task, joiner.classes, joiner.max_size, joiner.max_age_s)
                                  if joiner is not None else None)

    def use_version(self, version: str) -> None:
        """Predictions from now on are the model ``version``'s; the paired comparison starts again."""
        if version != self.model_version:
            self.model_version = version
            if self.monitor is not None:
                self.monitor.model_version = version
            if self.challenger_joiner is not None:
                self.challenger_joiner.paired.reset()

    def cache_challenger(self, version: str, where: Sequence[tuple[str, int, int]], ids: Sequence[str] | None,
                         event_times: np.ndarray, scores: Scores, champion: Scores) -> None:
        """Hold the challenger's predictions of a batch until their labels come."""
        if self.challenger_joiner is not None:
            self._cache(self.challenger_joiner, version, where, ids, event_times, scores, champion)

    def observe(
        self,
        where: Sequence[tuple[str, int, int]],
        ids: Sequence[str] | None,
        event_times: np.ndarray,
        inputs: np.ndarray,
        features: np.ndarray,
        scores: Scores,
    ) -> list[DriftEvent]:
        """Cache the batch's predictions for their labels and run the drift detectors over it.

        ``where`` is each row's (topic, partition, offset), rows in arrival order;
        ``ids`` their label ids when labels carry an id field of the input.
        """
        if self.joiner is not None:
            self._cache(self.joiner, self.model_version, where, ids, event_times, scores)
        if self.monitor is None:
            return []
        events: list[DriftEvent] = []
        topics, partition_list, offset_list = zip(*where)
        partitions = np.asarray(partition_list, dtype=np.int64)
        offsets = np.asarray(offset_list, dtype=np.int64)
        times = np.asarray(event_times, dtype=np.int64)
        distinct = dict.fromkeys(topics)
        # Input topics are few; rows of each are fed in arrival order.
        for topic in distinct:
            rows = np.arange(len(topics)) if len(distinct) == 1 else np.flatnonzero(np.array(topics) == topic)
            events.extend(self.monitor.update(
                topic, partitions[rows], offsets[rows], times[rows], inputs[rows], features[rows], scores.score[rows],
            ))
        return events

    def label(self, message: InputMessage) -> list[DriftEvent]:
        """Join one label message; InvalidRecordError if it does not decode or lacks an id."""
        assert self.joiner is not None and self.label_codec is not None
        record = self.label_codec.decode(message.value())
        label_id, truth = record.get("id"), record.get("label")
        if not label_id or truth is None:
            raise InvalidRecordError("label record lacks an id or a label")
        if self.challenger_joiner is not None:
            self.challenger_joiner.join(str(label_id), truth)
        joined = self.joiner.join(str(label_id), truth)
        if joined is None or self.monitor is None or not self.monitor.watches_errors:
            return []
        p = joined.prediction
        return self.monitor.update_errors(p.topic, p.partition, p.offset, p.event_time, joined.error)

    def _cache(self, joiner: LabelJoiner, version: str, where: Sequence[tuple[str, int, int]],
               ids: Sequence[str] | None, event_times: np.ndarray, scores: Scores,
               champion: Scores | None = None) -> None:
        now = time.time()
        proba = scores.probabilities
        positive = proba[:, 1] if proba is not None and proba.shape[1] == 2 else None
        for i, (topic, partition, offset) in enumerate(where):
            key = ids[i] if ids is not None else event_id(topic, partition, offset)
            joiner.add(key, CachedPrediction(
                score=float(scores.score[i]),
                label=scores.label[i] if scores.label is not None else None,
                positive=float(positive[i]) if positive is not None else None,
                model_version=version, topic=topic, partition=partition, offset=offset,
                event_time=int(event_times[i]), cached_at=now,
                champion=((champion.label[i] if champion.label is not None else None, float(champion.score[i]))
                          if champion is not None else None),
            ))
