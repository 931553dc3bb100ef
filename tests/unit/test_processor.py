"""One micro-batch without a broker: predictions, dead letters and offsets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from features import FeatureStore, compute_features
from models import BatchScorer, ModelArtifact
from schemas import load_schema
from stream.avro.codec import AvroCodec, AvroEncoder
from stream.config import ServiceConfig, ValidationConfig
from stream.pipeline.deadletter import HEADER_PREFIX
from stream.pipeline.processor import BatchProcessor
from stream.tools.generators import sensor_events

SCHEMA = load_schema("sensor_reading")
OUT = load_schema("prediction")


@dataclass
class FakeMessage:
    """The parts of confluent_kafka.Message the processor reads."""

    _value: bytes | None
    _offset: int
    _partition: int = 0
    _key: bytes | None = b"k"
    _headers: list = field(default_factory=list)
    _topic: str = "in"

    def topic(self): return self._topic
    def partition(self): return self._partition
    def offset(self): return self._offset
    def key(self): return self._key
    def value(self): return self._value
    def headers(self): return self._headers


def make_processor(config: ServiceConfig, artifact: ModelArtifact) -> BatchProcessor:
    return BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(config.features), scorer=BatchScorer(artifact),
                          encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts")


def test_batch_scores_match_offline(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    records = [r for r, _ in sensor_events(1500, 25, seed=9)]
    enc = AvroEncoder(SCHEMA)
    messages = [FakeMessage(enc.encode(r), i, _partition=i % 3) for i, r in enumerate(records)]
    proc = make_processor(small_config, small_model)
    results = [proc.process(messages[i : i + 400]) for i in range(0, 1500, 400)]
    decoded = [AvroCodec(OUT).decode(p.value) for res in results for p in res.predictions]
    assert len(decoded) == 1500 and not any(res.dead_letters for res in results)
    offline = BatchScorer(small_model).score(compute_features(small_config.features, records, "sensor_id", "ts"))
    assert np.array_equal([d["score"] for d in decoded], offline.score)
    assert [d["source_offset"] for d in decoded] == list(range(1500))
    assert all(d["model_name"] == "sensor-fault" and d["key"] == r["sensor_id"] for d, r in zip(decoded, records))
    assert results[-1].next_offsets == {("in", 0): 1497 + 1, ("in", 1): 1498 + 1, ("in", 2): 1499 + 1}


def test_bad_records_become_dead_letters_and_the_rest_is_scored(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    good = [r for r, _ in sensor_events(5, 2, seed=1)]
    nan = {**good[0], "temperature": float("nan")}
    no_key = {**good[0], "sensor_id": ""}
    messages = [
        FakeMessage(enc.encode(good[0]), 10),
        FakeMessage(b"\xff\xfe garbage", 11, _key=b"bad", _headers=[("trace", b"abc")]),
        FakeMessage(enc.encode(nan), 12),
        FakeMessage(enc.encode(good[1]), 13),
        FakeMessage(enc.encode(no_key), 14),
        FakeMessage(None, 15),
        FakeMessage(enc.encode(good[2]), 16),
    ]
    result = make_processor(small_config, small_model).process(messages)
    assert [AvroCodec(OUT).decode(p.value)["source_offset"] for p in result.predictions] == [10, 13, 16]
    assert [d.reason for d in result.dead_letters] == [
        "MalformedRecordError", "InvalidRecordError", "InvalidRecordError", "MalformedRecordError"]
    first = result.dead_letters[0]
    assert first.key == b"bad" and first.value == b"\xff\xfe garbage"
    headers = dict(first.headers)
    assert headers["trace"] == b"abc"
    assert headers[HEADER_PREFIX + "offset"] == b"11"
    assert headers[HEADER_PREFIX + "topic"] == b"in"
    assert headers[HEADER_PREFIX + "stage"] == b"decode"
    assert headers[HEADER_PREFIX + "exception"] == b"MalformedRecordError"
    assert int(headers[HEADER_PREFIX + "timestamp"]) > 1_700_000_000_000
    assert b"temperature" in dict(result.dead_letters[1].headers)[HEADER_PREFIX + "message"]
    assert result.next_offsets == {("in", 0): 17}
    assert result.consumed == 7


def test_a_rejected_record_leaves_the_window_untouched(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    records = [r for r, _ in sensor_events(50, 1, seed=2)]
    clean = make_processor(small_config, small_model).process([FakeMessage(enc.encode(r), i) for i, r in enumerate(records)])
    poisoned = [FakeMessage(enc.encode(r), i) for i, r in enumerate(records)]
    poisoned.insert(20, FakeMessage(enc.encode({**records[20], "pressure": float("inf")}), 999))
    dirty = make_processor(small_config, small_model).process(poisoned)
    assert len(clean.predictions) == len(dirty.predictions) == 50
    scores = lambda res: [AvroCodec(OUT).decode(p.value)["score"] for p in res.predictions]  # noqa: E731
    assert scores(clean) == scores(dirty)


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_empty_and_all_bad_batches_produce_no_model_call(small_config, small_model, size: int) -> None:
    result = make_processor(small_config, small_model).process([FakeMessage(b"x", i) for i in range(size)])
    assert len(result.predictions) == 0 and len(result.dead_letters) == size and result.model_seconds == 0.0


def test_labels_join_predictions_and_bad_labels_are_dead_lettered(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    from models.drift import DriftMonitor, SignalSpec
    from models.labels import LabelJoiner
    from stream.pipeline.quality import QualityTracker

    monitor = DriftMonitor(signals=[SignalSpec("error")], model_name="sensor-fault", model_version="1", input_fields=small_config.features.fields,
                           feature_names=small_config.features.feature_names)
    joiner = LabelJoiner("classification", small_model.manifest["classes"])
    quality = QualityTracker(monitor, "1", joiner, AvroCodec(load_schema("label")))
    proc = BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(small_config.features), scorer=BatchScorer(small_model),
                          encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts", quality=quality, labels_topic="labels")
    enc = AvroEncoder(SCHEMA)
    pairs = list(sensor_events(20, 4, seed=3))
    scored = proc.process([FakeMessage(enc.encode(r), i) for i, (r, _) in enumerate(pairs)])
    assert len(scored.predictions) == 20 and len(joiner) == 20

    label_enc = AvroEncoder(load_schema("label"))
    labels = [FakeMessage(label_enc.encode({"id": f"in/0/{i}", "label": str(y), "label_time": 0}), 100 + i,
                          _topic="labels") for i, (_, y) in enumerate(pairs[:5])]
    labels.append(FakeMessage(b"\x00garbage", 105, _topic="labels"))
    labels.append(FakeMessage(label_enc.encode({"id": "in/0/999", "label": "1", "label_time": 0}), 106, _topic="labels"))
    result = proc.process(labels)
    assert result.consumed == 0 and result.labels == 7 and len(result.predictions) == 0
    assert [d.reason for d in result.dead_letters] == ["MalformedRecordError"]
    assert result.next_offsets == {("labels", 0): 107}
    assert (joiner.joined, joiner.unmatched, len(joiner)) == (5, 1, 15)
    assert joiner.metric_values()[("1", "accuracy")] == 1.0  # the test model is right on these five


def test_labels_can_name_events_by_a_configured_id_field(small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    from models.labels import LabelJoiner
    from stream.pipeline.quality import QualityTracker

    joiner = LabelJoiner("classification", small_model.manifest["classes"])
    quality = QualityTracker(None, "1", joiner, AvroCodec(load_schema("label")), id_field="ts")
    proc = BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(small_config.features), scorer=BatchScorer(small_model),
                          encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts", quality=quality, labels_topic="labels")
    records = [r for r, _ in sensor_events(10, 3, seed=4)]
    proc.process([FakeMessage(AvroEncoder(SCHEMA).encode(r), i) for i, r in enumerate(records)])
    label = AvroEncoder(load_schema("label")).encode({"id": str(records[3]["ts"]), "label": "0", "label_time": 0})
    proc.process([FakeMessage(label, 0, _topic="labels")])
    assert (joiner.joined, joiner.unmatched) == (1, 0)


def _scored_offsets(result) -> list[int]:
    return [AvroCodec(OUT).decode(p.value)["source_offset"] for p in result.predictions]


def test_oversized_and_out_of_range_records_are_dead_lettered(small_config: ServiceConfig,
                                                              small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    good = [r for r, _ in sensor_events(4, 2, seed=3)]
    values = [enc.encode(good[0]), enc.encode({**good[1], "temperature": 900.0}),
              enc.encode(good[2]) + b"\0" * 200, enc.encode(good[3])]
    processor = BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(small_config.features), scorer=BatchScorer(small_model),
                               encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts",
                               validation=ValidationConfig(max_record_bytes=100, ranges={"temperature": [-40.0, 150.0]}))
    result = processor.process([FakeMessage(v, 20 + i) for i, v in enumerate(values)])
    assert _scored_offsets(result) == [20, 23]
    by_offset = {int(dict(d.headers)[HEADER_PREFIX + "offset"]): dict(d.headers) for d in result.dead_letters}
    assert by_offset[21][HEADER_PREFIX + "exception"] == b"OutOfRangeError"
    assert b"900.0" in by_offset[21][HEADER_PREFIX + "message"] and b"[-40.0, 150.0]" in by_offset[21][HEADER_PREFIX + "message"]
    assert by_offset[22][HEADER_PREFIX + "exception"] == b"RecordTooLargeError"
    assert by_offset[22][HEADER_PREFIX + "stage"] == b"validate"


class FailingStore(FeatureStore):
    """A feature store that fails, before changing any state, on events of one key."""

    def __init__(self, spec, bad_key: str) -> None:
        super().__init__(spec)
        self.bad_key = bad_key

    def update_arrays(self, keys, times, values, shards=None, clocks=None, held=None):
        if self.bad_key in keys:
            raise ArithmeticError(f"cannot compute features for {self.bad_key}")
        return super().update_arrays(keys, times, values, shards, clocks, held)


class FailingScorer(BatchScorer):
    """A scorer whose model call fails on any batch holding a row with this temperature."""

    def __init__(self, artifact: ModelArtifact, column: int, value: float) -> None:
        super().__init__(artifact)
        self.column, self.value = column, value

    def score(self, features):
        if np.any(features[:, self.column] == self.value):
            raise RuntimeError("model failed on a row")
        return super().score(features)


class ScribblingScorer(BatchScorer):
    """A scorer whose model writes into the matrix it is given, after scoring it."""

    def score(self, features):
        scores = super().score(features)
        features[:] = -1.0
        return scores


@pytest.mark.parametrize("skip", [{}, {1: ("features", ValueError("bad"))}])
def test_a_model_writing_into_its_input_leaves_the_batch_features_alone(
        small_config: ServiceConfig, small_model: ModelArtifact, skip: dict) -> None:
    # drift detectors and the shadow model read the batch's features after the model call
    processor = BatchProcessor(codec=AvroCodec(SCHEMA), store=FeatureStore(small_config.features),
                               scorer=ScribblingScorer(small_model), encoder=AvroEncoder(OUT),
                               key_field="sensor_id", time_field="ts")
    features = np.random.default_rng(3).normal(size=(4, small_config.features.n_features))
    before = features.copy()
    scores, failed = processor._score(features, skip)
    assert scores is not None and len(scores.score) == 4 - len(skip) and not failed
    assert np.array_equal(features, before)


def test_a_record_failing_features_or_scoring_is_isolated_and_the_rest_scored(
        small_config: ServiceConfig, small_model: ModelArtifact) -> None:
    enc = AvroEncoder(SCHEMA)
    records = [r for r, _ in sensor_events(60, 6, seed=4)]
    bad_key = records[7]["sensor_id"]
    poison = 1234.5  # the model fails on rows whose last temperature is this
    records[30] = {**records[30], "temperature": poison}
    spec = small_config.features
    last_temperature = spec.feature_names.index(next(n for n in spec.feature_names if n.startswith("temperature")
                                                     and n.endswith("last")))
    processor = BatchProcessor(codec=AvroCodec(SCHEMA), store=FailingStore(spec, bad_key),
                               scorer=FailingScorer(small_model, last_temperature, poison), encoder=AvroEncoder(OUT),
                               key_field="sensor_id", time_field="ts")
    result = processor.process([FakeMessage(enc.encode(r), i) for i, r in enumerate(records)])

    failed_features = [i for i, r in enumerate(records) if r["sensor_id"] == bad_key]
    reasons = {int(dict(d.headers)[HEADER_PREFIX + "offset"]): (d.reason, dict(d.headers)[HEADER_PREFIX + "stage"])
               for d in result.dead_letters}
    assert reasons == {**dict.fromkeys(failed_features, ("ArithmeticError", b"features")), 30: ("RuntimeError", b"score")}
    assert _scored_offsets(result) == [i for i in range(60) if i not in reasons]
    # the survivors' scores are those of the same events without the failing ones
    kept = [r for i, r in enumerate(records) if r["sensor_id"] != bad_key]
    offline = BatchScorer(small_model).score(compute_features(spec, kept, "sensor_id", "ts")).score
    expected = [s for r, s in zip(kept, offline) if r is not records[30]]
    assert np.array_equal([AvroCodec(OUT).decode(p.value)["score"] for p in result.predictions], expected)


def test_a_null_or_missing_key_or_event_time_is_dead_lettered(small_config: ServiceConfig,
                                                              small_model: ModelArtifact) -> None:
    nullable = {**SCHEMA, "fields": [
        {**f, "type": ["null", f["type"]], "default": None} if f["name"] in ("sensor_id", "ts") else f
        for f in SCHEMA["fields"]]}
    # an older producer whose records have no key field at all
    keyless = {**SCHEMA, "fields": [f for f in SCHEMA["fields"] if f["name"] != "sensor_id"]}
    good = [r for r, _ in sensor_events(3, 2, seed=5)]
    enc = AvroEncoder(nullable)
    values = [enc.encode(good[0]), enc.encode({**good[1], "sensor_id": None}), enc.encode({**good[1], "ts": None}),
              enc.encode(good[2])]
    processor = BatchProcessor(codec=AvroCodec(nullable), store=FeatureStore(small_config.features), scorer=BatchScorer(small_model),
                               encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts")
    result = processor.process([FakeMessage(v, i) for i, v in enumerate(values)])
    assert _scored_offsets(result) == [0, 3]
    messages = [dict(d.headers)[HEADER_PREFIX + "message"].decode() for d in result.dead_letters]
    assert [d.reason for d in result.dead_letters] == ["InvalidRecordError", "InvalidRecordError"]
    assert "key field 'sensor_id' is missing" in messages[0] and "time field 'ts' is None" in messages[1]

    old = {k: v for k, v in good[0].items() if k != "sensor_id"}
    processor = BatchProcessor(codec=AvroCodec(nullable, writer_schema=keyless), store=FeatureStore(small_config.features),
                               scorer=BatchScorer(small_model), encoder=AvroEncoder(OUT), key_field="sensor_id", time_field="ts")
    result = processor.process([FakeMessage(AvroEncoder(keyless).encode(old), 7)])
    assert len(result.predictions) == 0 and [d.reason for d in result.dead_letters] == ["InvalidRecordError"]


def test_replayed_input_rebuilds_state_and_produces_nothing(small_config: ServiceConfig,
                                                            small_model: ModelArtifact) -> None:
    """A store restored as of offset 600, replayed from a marker at 400 up to a commit at 900."""
    from stream.state.replay import Replay

    records = [r for r, _ in sensor_events(1500, 25, seed=9)]
    enc = AvroEncoder(SCHEMA)
    messages = [FakeMessage(enc.encode(r), i, _partition=i % 3) for i, r in enumerate(records)]
    messages[700] = FakeMessage(b"\xff garbage", 700, _partition=700 % 3)  # dead-lettered the first time round
    offline = BatchScorer(small_model).score(compute_features(
        small_config.features, [r for i, r in enumerate(records) if i != 700], "sensor_id", "ts"))
    offline_by_offset = dict(zip([i for i in range(1500) if i != 700], offline.score.tolist()))

    first = make_processor(small_config, small_model)
    for i in range(0, 600, 150):
        first.process(messages[i:i + 150])
    restored = make_processor(small_config, small_model)
    for shard in range(3):
        keys = first.store.keys(shard)
        restored.store.load(list(zip(keys, first.store.export(keys))), shard)
    everyone = {r["sensor_id"] for r in records}
    replay = Replay(until={("in", p): 900 for p in range(3)},
                    skip={("in", p): dict.fromkeys(everyone, 600) for p in range(3)})

    produced, dead = [], []
    for i in range(400, 1500, 130):
        result = restored.process(messages[i:i + 130], replay)
        committable = replay.committable(result.next_offsets)
        assert all(o >= 900 for o in committable.values())
        replay.advance(committable)
        produced += [AvroCodec(OUT).decode(p.value) for p in result.predictions]
        dead += result.dead_letters
    assert not replay and replay.done == {("in", p): 900 for p in range(3)}
    assert [d["source_offset"] for d in produced] == list(range(900, 1500))
    assert dead == []  # offset 700 was dead-lettered before the restore
    assert [d["score"] for d in produced] == [offline_by_offset[o] for o in range(900, 1500)]
