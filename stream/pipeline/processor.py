"""One micro-batch, without any I/O: decode, validate, features in arrival order, one model call, outputs.

The service hands consumed messages in and produces what comes out; this
module knows nothing of consumers or producers, so the whole data path is
unit-tested without a broker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from features import FeatureStore
from models import BatchScorer
from models.scorer import Scores
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.avro.decoder import BatchDecoder, Column, UnsupportedSchema, column_for
from stream.avro.encoder import BatchEncoder
from stream.config import ValidationConfig
from stream.exceptions import ConfigError, OutputRefusedError, OutputRejectedError, RecordError
from stream.pipeline.columns import prediction_columns, prediction_encoder
from stream.pipeline.deadletter import DeadLetter, bare, dead_letter_for, shrunk
from stream.pipeline.quality import QualityTracker
from stream.pipeline.results import BatchResult, Predictions
from stream.pipeline.shadow import Shadow, ShadowJob
from stream.pipeline.validation import RecordValidator
from stream.pipeline.warmup import WarmUpMessage, sample_record
from stream.state.replay import Replay
from stream.types import InputMessage

__all__ = ["BatchProcessor"]

logger = logging.getLogger(__name__)


# librdkafka's default message.max.bytes: the largest record a producer sends.
DEFAULT_MAX_OUTPUT_BYTES = 1_000_000
# Room for a record's framing inside message.max.bytes.
PREDICTION_HEADROOM = 512

# Reader field types the processor takes for the key, the event time and the feature values.
KEY_TYPES = ("string", "int", "long")
TIME_TYPES = ("int", "long")
VALUE_TYPES = ("int", "long", "float", "double")


class BatchProcessor:
    """Turns consumed messages into predictions and dead letters."""

    def __init__(
        self,
        *,
        codec: AvroCodec,
        store: FeatureStore,
        scorer: BatchScorer,
        encoder: AvroEncoder,
        key_field: str,
        time_field: str,
        quality: QualityTracker | None = None,
        labels_topic: str | None = None,
        validation: ValidationConfig | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        shadow: Shadow | None = None,
    ) -> None:
        """``validation``: the [validation] rules (record and key sizes, event times, ranges);
        ``max_output_bytes``: the largest record the producer sends (its message.max.bytes);
        ``shadow``: the challenger that scores each batch's features beside the model."""
        validation = validation or ValidationConfig()
        self.codec = codec
        self.store = store
        self.encoder = encoder
        self.shadow = shadow
        self.key_field = key_field
        self.time_field = time_field
        self.fields = store.spec.fields
        self.quality = quality
        self.labels_topic = labels_topic
        self.dead_letter_max_bytes = validation.dead_letter_max_bytes
        self.max_output_bytes = max_output_bytes
        self.id_field = quality.id_field if quality is not None and quality.joiner is not None else None
        wanted = [("codec.key_field", key_field, KEY_TYPES), ("codec.time_field", time_field, TIME_TYPES)]
        wanted += [("features.fields", name, VALUE_TYPES) for name in self.fields]
        if self.id_field is not None and self.id_field not in (key_field, time_field, *self.fields):
            wanted.append(("labels.id_field", self.id_field, KEY_TYPES))
        self.decoder = BatchDecoder(codec, [_column(codec, *w) for w in wanted], max_bytes=validation.max_record_bytes)
        self.validator = RecordValidator(key_field=key_field, time_field=time_field, fields=self.fields,
                                         key_is_string=self.decoder.columns[0].type == "string", config=validation)
        self.use(scorer)

    def use(self, scorer: BatchScorer) -> None:
        """Score with ``scorer`` from the next batch on; its predictions name its version."""
        self.scorer = scorer
        self.model_name = scorer.artifact.name
        self.model_version = scorer.artifact.version
        self._batch_encoder = self.encoder_for(scorer)
        if self.quality is not None:
            self.quality.use_version(self.model_version)

    def encoder_for(self, scorer: BatchScorer) -> BatchEncoder | None:
        """The compiled encoder of ``scorer``'s predictions, or None when the output schema has none."""
        return prediction_encoder(self.encoder.schema, self.encoder.prefix, scorer)

    def warm_up(self) -> None:
        """Run the compiled kernels once on a synthetic batch, with scratch state, before real events.

        numba loads each kernel from its on-disk cache on first use (a few
        hundred ms in all), which would otherwise land on the first events'
        latency. Nothing of this batch is kept or produced.
        """
        try:
            record = sample_record(self.codec.reader)
            record[self.time_field] = int(time.time() * 1000)
            body = AvroEncoder(self.codec.reader).encode(record)
        except Exception as exc:  # an exotic reader schema: start cold rather than not at all
            logger.info("no warm-up batch for this reader schema (%s)", exc)
            return
        scratch = BatchProcessor(codec=AvroCodec(self.codec.reader), store=FeatureStore(self.store.spec, self.store.key_ttl_ms), scorer=self.scorer,
                                 encoder=self.encoder, key_field=self.key_field, time_field=self.time_field)
        started = time.perf_counter()
        result = scratch.process([WarmUpMessage(body, offset) for offset in range(64)])
        # and the state changelog's kernels: a checkpoint saves keys, a restore loads them
        keys = scratch.store.keys(0)
        FeatureStore(self.store.spec).load(list(zip(keys, scratch.store.export(keys))), shard=0)
        logger.info("warmed up in %.0f ms (%d scored)", (time.perf_counter() - started) * 1000,
                    len(result.predictions))

    def process(self, messages: Sequence[InputMessage], replay: Replay | None = None,
                rejected: Mapping[tuple[str, int, int], str] | None = None) -> BatchResult:
        """Process ``messages`` in order; bad ones become dead letters, the rest are scored.

        Messages that ``replay`` covers update state only: no prediction, dead
        letter or drift event comes out of them (those went out the first time).
        Messages in ``rejected`` ((topic, partition, offset) -> why) are ones
        whose outputs the broker refused before: they are dead-lettered.
        """
        result = BatchResult()
        if self.shadow is not None:
            self._collect_shadow(result)
        topics = [m.topic() or "" for m in messages]
        partitions = [m.partition() or 0 for m in messages]
        offsets = [m.offset() or 0 for m in messages]
        for tp, offset in zip(zip(topics, partitions), offsets):
            result.next_offsets[tp] = offset + 1  # the last one per partition stays
        if self.labels_topic is not None and self.labels_topic in topics:
            events = self._labels(messages, topics, result)
            messages = [messages[i] for i in events]
            topics = [topics[i] for i in events]
            partitions = [partitions[i] for i in events]
            offsets = [offsets[i] for i in events]
        result.per_topic = dict(Counter(topics))
        result.inputs = messages
        if not messages:
            return result
        batch = self.decoder.decode([m.value() for m in messages])
        keys, bad = self.validator.check(batch, messages)
        if rejected:
            for i, position in enumerate(zip(topics, partitions, offsets)):
                if position in rejected:
                    bad[i] = OutputRefusedError(rejected[position])
        replayed = _replayed(replay, topics, partitions, offsets) if replay else None
        for row in sorted(bad):
            if replayed is None or not replayed[row]:
                exc = bad[row]
                result.dead_letters.append(self._letter(messages[row], exc, exc.stage))
        # rows left out: the bad ones, and replayed ones already in their key's restored state
        dropped = set(bad)
        if replayed is not None and replay is not None and replay.skip:
            dropped |= _skipped(replay, topics, partitions, offsets, keys, replayed)
        if len(dropped) == len(messages):
            return result
        rows = np.setdiff1d(np.arange(len(messages)), np.fromiter(dropped, dtype=np.int64, count=len(dropped))) \
            if dropped else np.arange(len(messages))
        keys = [keys[i] for i in rows.tolist()] if dropped else keys
        all_times = batch.numbers(self.time_field)
        times = all_times[rows]
        values = np.column_stack([batch.numbers(f)[rows].astype(np.float64) for f in self.fields])
        clocks = self._clocks(all_times, np.asarray(partitions, dtype=np.int64), bad, rows)
        held = np.zeros(len(rows), dtype=np.int64)
        features, failed = self._features(keys, times, values, np.asarray(partitions, dtype=np.int64)[rows],
                                          clocks, held)
        started = time.perf_counter()
        scores, score_failed = self._score(features, failed)
        result.model_seconds = time.perf_counter() - started
        failed.update(score_failed)
        if failed:  # isolated per record: those are dead-lettered, the rest go on
            for i, (stage, error) in sorted(failed.items()):
                if replayed is None or not replayed[int(rows[i])]:
                    result.dead_letters.append(self._letter(messages[int(rows[i])], error, stage))
            kept = np.setdiff1d(np.arange(len(rows)), np.fromiter(failed, dtype=np.int64, count=len(failed)))
            rows, times, values, features, held = rows[kept], times[kept], values[kept], features[kept], held[kept]
            keys = [keys[i] for i in kept.tolist()]
        if scores is None:
            return result
        topics = [topics[i] for i in rows.tolist()] if len(rows) < len(messages) else topics
        partitions_a = np.asarray(partitions, dtype=np.int64)[rows]
        offsets_a = np.asarray(offsets, dtype=np.int64)[rows]
        if replayed is None:
            result.predictions = self._encode(keys, times, topics, partitions_a, offsets_a, scores, rows, held)
        else:
            live = ~replayed[rows]
            idx = np.flatnonzero(live).tolist()
            result.predictions = self._encode([keys[i] for i in idx], times[live], [topics[i] for i in idx],
                                              partitions_a[live], offsets_a[live], scores.take(live), rows[live],
                                              held[live])
        self._drop_oversized(result.predictions)
        ids = None
        if self.id_field is not None:
            ids = [str(v) for v in batch.values(self.id_field, rows)]
        if self.shadow is not None and self.shadow.scorer is not None and self.shadow.version != self.model_version:
            live_rows = None if replayed is None else ~replayed[rows]
            self._submit_shadow(features, keys, times, topics, partitions_a, offsets_a, ids, scores, held, live_rows)
        for row, error in result.predictions.unencodable.items():
            result.dead_letters.append(self._letter(messages[row], error, error.stage))
        if self.quality is not None:
            where = list(zip(topics, partitions_a.tolist(), offsets_a.tolist()))
            alarms = self.quality.observe(where, ids, times, values, features, scores)
            if replay:
                alarms = [e for e in alarms if e.offset >= replay.until.get((e.topic, e.partition), -1)]
            result.drift_events.extend(alarms)
        return result

    def _submit_shadow(self, features: np.ndarray, keys: list[str], times: np.ndarray, topics: list[str],
                       partitions: np.ndarray, offsets: np.ndarray, ids: list[str] | None, scores: Scores,
                       held: np.ndarray, live: np.ndarray | None) -> None:
        """Hand the batch's scored rows (replayed ones left out) to the challenger."""
        assert self.shadow is not None
        if live is not None:
            idx = np.flatnonzero(live)
            if len(idx) == 0:
                return
            features, times, partitions, offsets, scores, held = (features[idx], times[idx], partitions[idx],
                                                                  offsets[idx], scores.take(idx), held[idx])
            keys = [keys[i] for i in idx.tolist()]
            topics = [topics[i] for i in idx.tolist()]
            ids = [ids[i] for i in idx.tolist()] if ids is not None else None
        self.shadow.submit(ShadowJob(features, keys, times, topics, partitions, offsets, ids, scores, held))

    def _collect_shadow(self, result: BatchResult) -> None:
        """The challenger's finished batches: cached for their labels, and their records for the shadow topic."""
        assert self.shadow is not None
        for outcome in self.shadow.collect():
            if outcome.scores is None:
                continue
            job = outcome.job
            if self.quality is not None:
                self.quality.cache_challenger(outcome.version, list(zip(job.topics, job.partitions.tolist(),
                                                                         job.offsets.tolist())),
                                              job.ids, job.event_times, outcome.scores, job.champion)
            result.shadow_keys.extend(outcome.keys)
            result.shadow_values.extend(outcome.values)

    def _letter(self, message: InputMessage, error: Exception, stage: str) -> DeadLetter:
        """The dead letter of ``message``, made to fit what the producer sends.

        An output of a record the broker refused before goes out bare (no
        value, no original headers), so that it cannot be refused again.
        """
        if isinstance(error, OutputRefusedError):
            return bare(dead_letter_for(message, error, stage, max_bytes=0))
        return shrunk(dead_letter_for(message, error, stage, max_bytes=self.dead_letter_max_bytes),
                      self.max_output_bytes)

    def _drop_oversized(self, predictions: Predictions) -> None:
        """Predictions larger than the producer sends leave for ``unencodable`` (they become dead letters)."""
        limit = self.max_output_bytes - PREDICTION_HEADROOM
        if not predictions.values or max(map(len, predictions.values)) + max(map(len, predictions.keys)) <= limit:
            return
        keep = [i for i, (k, v) in enumerate(zip(predictions.keys, predictions.values)) if len(k) + len(v) <= limit]
        for i in sorted(set(range(len(predictions))) - set(keep)):
            size = len(predictions.keys[i]) + len(predictions.values[i])
            predictions.unencodable[int(predictions.rows[i])] = OutputRejectedError(
                f"its prediction is {size:,} bytes, over the producer's message.max.bytes ({self.max_output_bytes:,})")
        predictions.keys = [predictions.keys[i] for i in keep]
        predictions.values = [predictions.values[i] for i in keep]
        predictions.event_times_ms = predictions.event_times_ms[keep]
        predictions.rows = predictions.rows[keep]

    def _clocks(self, times: np.ndarray, partitions: np.ndarray, bad: Mapping[int, Any],
                rows: np.ndarray) -> np.ndarray:
        """The partition clocks of ``rows``, advanced over every valid event of the batch in order.

        Replayed events left out (already in their key's restored state) move
        the clock too, as they did the first time, so that expiry is the same.
        Without a ttl there are no clocks (an empty array).
        """
        if self.store.key_ttl_ms <= 0:
            return self.store.advance_clocks(times, partitions)
        valid = np.ones(len(times), dtype=bool)
        if bad:
            valid[np.fromiter(bad, dtype=np.int64, count=len(bad))] = False
        clocks = np.zeros(len(times), dtype=np.int64)
        clocks[valid] = self.store.advance_clocks(times[valid], partitions[valid])
        return clocks[rows]

    def _features(self, keys: list[str], times: np.ndarray, values: np.ndarray, partitions: np.ndarray,
                  clocks: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, dict[int, tuple[str, Exception]]]:
        """The batch's features; if the batch call fails, record by record, isolating the ones that fail.

        ``FeatureStore.update_arrays`` changes no state when it raises, so the
        records are retried one at a time, in arrival order. ``held`` receives
        the events each row's key holds.
        """
        try:
            return self.store.update_arrays(keys, times, values, partitions, clocks, held), {}
        except Exception as exc:
            logger.warning("computing features for a batch of %d failed (%s: %s); retrying record by record",
                           len(keys), type(exc).__name__, exc)
        features = np.zeros((len(keys), self.store.spec.n_features))
        failed: dict[int, tuple[str, Exception]] = {}
        held[:] = 0
        for i, key in enumerate(keys):
            at = slice(i, i + 1)
            try:
                features[i] = self.store.update_arrays([key], times[at], values[at], partitions[at],
                                                       clocks[at] if len(clocks) else clocks, held[at])[0]
            except Exception as exc:
                failed[i] = ("features", exc)
        return features, failed

    def _score(self, features: np.ndarray,
               skip: Mapping[int, Any]) -> tuple[Scores | None, dict[int, tuple[str, Exception]]]:
        """Scores of the rows in neither ``skip`` nor the failures returned, in row order.

        If the model call fails, each row alone finds the rows that fail; the
        survivors are then scored again in one call. None when no row is left.
        """
        keep = _without(np.arange(len(features)), skip)
        if len(keep) == 0:
            return None, {}
        try:  # features[keep] is a copy: a model that writes into its input must not change what drift sees
            return self.scorer.score(features[keep]), {}
        except Exception as exc:
            logger.warning("the model call for a batch of %d failed (%s: %s); finding the records that fail",
                           len(keep), type(exc).__name__, exc)
        failed: dict[int, tuple[str, Exception]] = {}
        for i in keep.tolist():
            try:
                self.scorer.score(features[i:i + 1].copy())
            except Exception as exc:
                failed[i] = ("score", exc)
        survivors = _without(keep, failed)
        return (self.scorer.score(features[survivors]) if len(survivors) else None), failed

    def _labels(self, messages: Sequence[InputMessage], topics: list[str], result: BatchResult) -> list[int]:
        """Join the batch's label messages (before its predictions are cached); the rows of the rest."""
        assert self.quality is not None
        rest = []
        for i, msg in enumerate(messages):
            if topics[i] != self.labels_topic:
                rest.append(i)
                continue
            result.labels += 1
            try:
                result.drift_events.extend(self.quality.label(msg))
            except RecordError as exc:
                result.dead_letters.append(self._letter(msg, exc, exc.stage))
                result.label_dead_letters += 1
        return rest

    def _encode(self, keys: list[str], times: np.ndarray, topics: list[str], partitions: np.ndarray,
                offsets: np.ndarray, scores: Scores, rows: np.ndarray, held: np.ndarray) -> Predictions:
        """The predictions of ``rows`` (indexes into the batch), encoded; a row whose prediction cannot be
        encoded is left out and named in ``unencodable``."""
        n = len(keys)
        now_ms = int(time.time() * 1000)
        key_bytes = [k.encode() for k in keys]
        if self._batch_encoder is not None:
            columns = prediction_columns(key_bytes, times, topics, partitions, offsets, scores, now_ms, held)
            try:
                return Predictions(key_bytes, self._batch_encoder.encode(n, columns),
                                   np.asarray(times, dtype=np.int64), rows)
            except (OverflowError, ValueError, IndexError, TypeError):
                pass  # one record is beyond the compiled program: encode one by one, and find it
        values: list[bytes] = []
        failed: dict[int, OutputRejectedError] = {}
        for i, record in enumerate(self._records(keys, times, topics, partitions, offsets, scores, now_ms, held)):
            try:
                values.append(self.encoder.encode(record))
            except (OverflowError, ValueError, IndexError, TypeError, AttributeError) as exc:
                failed[i] = OutputRejectedError(f"its prediction cannot be encoded: {type(exc).__name__}: {exc}")
        if not failed:
            return Predictions(key_bytes, values, np.asarray(times, dtype=np.int64), rows)
        kept = [i for i in range(n) if i not in failed]
        return Predictions([key_bytes[i] for i in kept], values, np.asarray(times, dtype=np.int64)[kept], rows[kept],
                           unencodable={int(rows[i]): error for i, error in failed.items()})

    def _records(self, keys: list[str], times: np.ndarray, topics: list[str], partitions: np.ndarray,
                 offsets: np.ndarray, scores: Scores, now_ms: int, held: np.ndarray) -> Iterator[dict[str, Any]]:
        """Predictions as dicts, for output schemas the compiled encoder does not cover."""
        proba = scores.probabilities
        for i, (key, ts, topic, partition, offset, events) in enumerate(
                zip(keys, times.tolist(), topics, partitions.tolist(), offsets.tolist(), held.tolist())):
            yield {
                "key": key, "event_time": ts, "source_topic": topic, "source_partition": partition,
                "source_offset": offset, "model_name": self.model_name, "model_version": self.model_version,
                "score": float(scores.score[i]),
                "label": scores.label[i] if scores.label is not None else None,
                "probabilities": (
                    [{"label": c, "probability": float(p)} for c, p in zip(scores.classes, proba[i])]
                    if proba is not None else []
                ),
                "scored_at": now_ms,
                "window_events": events,
            }


def _replayed(replay: Replay, topics: list[str], partitions: list[int], offsets: list[int]) -> np.ndarray:
    """Per row: whether it is read again for state only."""
    until = replay.until
    return np.fromiter((o < until.get((t, p), -1) for t, p, o in zip(topics, partitions, offsets)),
                       dtype=bool, count=len(offsets))


def _skipped(replay: Replay, topics: list[str], partitions: list[int], offsets: list[int], keys: list[Any],
             replayed: np.ndarray) -> set[int]:
    """Replayed rows whose key's restored state already holds them."""
    out = set()
    for i in np.flatnonzero(replayed).tolist():
        skip = replay.skip.get((topics[i], partitions[i]))
        if skip and offsets[i] < skip.get(keys[i], -1):
            out.add(i)
    return out


def _column(codec: AvroCodec, setting: str, name: str, types: tuple[str, ...]) -> Column:
    """The reader column for a configured field; ConfigError unless its type is one of ``types``."""
    try:
        column = column_for(codec.reader, name)
    except UnsupportedSchema as exc:
        raise ConfigError(f"{setting}: {exc}; it must be one of {', '.join(types)} (or a union of null and one)") \
            from exc
    if column.type not in types:
        raise ConfigError(f"{setting}: field {name!r} is {column.type} in the reader schema; "
                          f"it must be one of {', '.join(types)}")
    return column


def _without(rows: np.ndarray, drop: Mapping[int, Any]) -> np.ndarray:
    """``rows`` (sorted row numbers) less those that are keys of ``drop``."""
    return np.setdiff1d(rows, np.fromiter(drop, dtype=np.int64, count=len(drop))) if drop else rows
